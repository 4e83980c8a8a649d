"""The console's vendored browser files are exactly what ``scripts/refresh-web-assets.sh``
took from npm at the pinned versions (issue 17): checksums match the committed manifest,
nothing unlisted is served, and the first page's JS and CSS stay within the budget."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "kittylab" / "web"
VENDOR = WEB / "vendor"
FIRST_LOAD_BUDGET = 250 * 1024


def _manifest() -> dict[str, str]:
    lines = (VENDOR / "SHA256SUMS").read_text().splitlines()
    return {path: digest for digest, path in (line.split(maxsplit=1) for line in lines)}


def test_vendored_files_match_their_checksums() -> None:
    for path, digest in _manifest().items():
        assert hashlib.sha256((VENDOR / path).read_bytes()).hexdigest() == digest, path


def test_every_vendored_file_is_in_the_manifest() -> None:
    on_disk = {
        str(p.relative_to(VENDOR))
        for p in VENDOR.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    }
    assert on_disk == set(_manifest())


def test_versions_are_pinned_exactly_in_the_refresh_script() -> None:
    script = (ROOT / "scripts" / "refresh-web-assets.sh").read_text()
    pins = dict(re.findall(r"^([A-Z_]+)=(\S+)$", script, flags=re.MULTILINE))
    assert pins, "no pinned versions found"
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in pins.values()), pins
    versions = (VENDOR / "VERSIONS").read_text()
    for version in pins.values():
        assert version in versions


def test_first_load_js_and_css_fit_the_budget_compressed() -> None:
    """What a console page loads: its stylesheet, htmx, the SSE extension and console.js."""
    files = [
        WEB / "static" / "console.css",
        WEB / "static" / "console.js",
        VENDOR / "htmx" / "htmx.min.js",
        VENDOR / "htmx" / "sse.min.js",
    ]
    total = sum(len(gzip.compress(f.read_bytes())) for f in files)
    assert total <= FIRST_LOAD_BUDGET, total
