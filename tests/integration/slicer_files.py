"""What the slicer tests share (tests/integration/test_prusaslicer.py,
test_slicer_untrusted.py): the profile they slice with. The real ``prusa-slicer`` and the
slicer built from it are fixtures in tests/integration/conftest.py."""

from __future__ import annotations

from kittylab.fabrication.ports import SliceProfile

GENERIC = SliceProfile(printer="generic-220", filament="pla", print="0.20mm")
