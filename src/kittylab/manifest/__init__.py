"""The lab manifest: a YAML file declaring zones, devices, users and access policies.

``load_manifest`` reads and validates it (every problem located by file, line and field),
``apply_manifest`` makes the database match it (every change audited), ``render_lab`` shows
what is stored. ``review`` is the API's way in: a manifest that weakens safety
(``domain.lab_review``) is held for a second person; ``lab_state`` reads the lab's facts
and revision for it.
"""

from kittylab.manifest.apply import ApplyReport, Tally, apply_manifest
from kittylab.manifest.loader import load_manifest, parse_manifest
from kittylab.manifest.model import (
    DeviceSpec,
    KeySpec,
    LabManifest,
    ManifestError,
    ManifestProblem,
    PolicySpec,
    UserSpec,
    ZoneSpec,
    build_manifest,
)
from kittylab.manifest.render import render_lab

__all__ = [
    "ApplyReport",
    "DeviceSpec",
    "KeySpec",
    "LabManifest",
    "ManifestError",
    "ManifestProblem",
    "PolicySpec",
    "Tally",
    "UserSpec",
    "ZoneSpec",
    "apply_manifest",
    "build_manifest",
    "load_manifest",
    "parse_manifest",
    "render_lab",
]
