"""The console's vendored browser files are exactly what ``scripts/refresh-web-assets.sh``
took from npm at the pinned versions (issue 17): checksums match the committed manifests
(the served ones and the browser tests' axe-core), nothing unlisted is there, and every
page's first load of JS and CSS stays within the budget."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "kittylab" / "web"
VENDOR = WEB / "vendor"
TEST_VENDOR = ROOT / "tests" / "e2e" / "vendor"
VENDORS = pytest.mark.parametrize("vendor", [VENDOR, TEST_VENDOR], ids=["served", "tests"])
FIRST_LOAD_BUDGET = 250 * 1024


def _manifest(vendor: Path) -> dict[str, str]:
    lines = (vendor / "SHA256SUMS").read_text().splitlines()
    return {path: digest for digest, path in (line.split(maxsplit=1) for line in lines)}


@VENDORS
def test_vendored_files_match_their_checksums(vendor: Path) -> None:
    for path, digest in _manifest(vendor).items():
        assert hashlib.sha256((vendor / path).read_bytes()).hexdigest() == digest, path


@VENDORS
def test_every_vendored_file_is_in_the_manifest(vendor: Path) -> None:
    on_disk = {
        str(p.relative_to(vendor))
        for p in vendor.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    }
    assert on_disk == set(_manifest(vendor))


def test_versions_are_pinned_exactly_in_the_refresh_script() -> None:
    script = (ROOT / "scripts" / "refresh-web-assets.sh").read_text()
    pins = dict(re.findall(r"^([A-Z_]+)=(\S+)$", script, flags=re.MULTILINE))
    assert pins, "no pinned versions found"
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in pins.values()), pins
    versions = (VENDOR / "VERSIONS").read_text() + (TEST_VENDOR / "VERSIONS").read_text()
    for version in pins.values():
        assert version in versions


ASSET = re.compile(r"/console/static/([\w./-]+\.(?:js|css))")


def _assets(template: Path) -> set[Path]:
    """The JS and CSS a template loads (its own and what it extends or includes)."""
    text = template.read_text()
    found = {
        VENDOR / name.removeprefix("vendor/")
        if name.startswith("vendor/")
        else WEB / "static" / name
        for name in ASSET.findall(text)
    }
    for parent in re.findall(r'{%\s*(?:extends|include)\s+"([^"]+)"', text):
        found |= _assets(WEB / "templates" / parent)
    return found


PAGES = sorted(
    p
    for p in (WEB / "templates").glob("*.html")
    if not p.name.startswith("_") and p.name != "docs.html"
)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_each_pages_first_load_js_and_css_fit_the_budget_compressed(page: Path) -> None:
    """What each console page loads (the API docs, Swagger UI's own page, aside): the
    stylesheet, htmx, the SSE extension, console.js and the page's own script."""
    files = _assets(page)
    assert WEB / "static" / "console.js" in files
    total = sum(len(gzip.compress(f.read_bytes(), 9)) for f in files)
    assert total <= FIRST_LOAD_BUDGET, (total, sorted(f.name for f in files))


BASE_PAGE = [
    WEB / "static" / "console.css",
    WEB / "static" / "console.js",
    VENDOR / "htmx" / "htmx.min.js",
    VENDOR / "htmx" / "sse.min.js",
]
# What the pages of issue 18 load on top of every page's files: three.js only on the CAD
# studio's job page, uPlot only on the operations view.
PAGE_EXTRAS = {
    "studio_job.html": [
        WEB / "static" / "studio.css",
        WEB / "static" / "studio.js",
        WEB / "static" / "studio-viewer.js",
        VENDOR / "three" / "three.module.min.js",
        VENDOR / "three" / "three.core.min.js",
        VENDOR / "three" / "STLLoader.js",
        VENDOR / "three" / "OrbitControls.js",
    ],
    "studio.html": [WEB / "static" / "studio.css", WEB / "static" / "studio.js"],
    "operations.html": [
        WEB / "static" / "operations.css",
        WEB / "static" / "operations.js",
        VENDOR / "uplot" / "uPlot.iife.min.js",
        VENDOR / "uplot" / "uPlot.min.css",
    ],
}


def test_three_js_and_uplot_load_only_on_the_pages_that_draw_with_them() -> None:
    templates = WEB / "templates"
    for page in templates.glob("*.html"):
        text = page.read_text()
        assert ("vendor/three/" in text) == (page.name == "studio_job.html"), page.name
        assert ("vendor/uplot/" in text) == (page.name == "operations.html"), page.name
    assert "three.module.min.js" in (templates / "studio_job.html").read_text()


def test_the_studio_and_operations_pages_fit_the_budget_compressed() -> None:
    for page, extras in PAGE_EXTRAS.items():
        total = sum(len(gzip.compress(f.read_bytes())) for f in BASE_PAGE + extras)
        assert total <= FIRST_LOAD_BUDGET, (page, total)
