#!/usr/bin/env bash
# Refresh the console's vendored browser assets from npm (issue 17), at the exact versions
# pinned below, and rewrite the checksum manifests that tests/unit/test_web_assets.py checks.
# Serving never needs Node or the network: the files are committed in src/kittylab/web/vendor.
# axe-core (the accessibility checker the browser tests run on every page) is for the tests
# only: it goes to tests/e2e/vendor and is never served.
# Needs npm (Debian's `npm`). Change a version here, run this, commit the result.
set -euo pipefail

HTMX=2.0.11
HTMX_SSE=2.2.4
SWAGGER_UI=5.36.0
# three.js: the newest release that still ships npm's own minified builds (0.186 dropped them).
THREE=0.185.0
UPLOT=1.6.32
AXE_CORE=4.14.1

root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/src/kittylab/web/vendor"
test_vendor="$root/tests/e2e/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch PACKAGE VERSION: unpack the registry's tarball into $work/PACKAGE
    local dir="$work/$1"
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "$1@$2" >/dev/null && tar -xzf ./*.tgz)
    echo "$dir/package"
}

rm -rf "$vendor"
mkdir -p "$vendor/htmx" "$vendor/swagger-ui" "$vendor/three" "$vendor/uplot"

src="$(fetch htmx.org "$HTMX")"
cp "$src/dist/htmx.min.js" "$src/LICENSE" "$vendor/htmx/"
src="$(fetch htmx-ext-sse "$HTMX_SSE")"
cp "$src/dist/sse.min.js" "$vendor/htmx/sse.min.js" 2>/dev/null || cp "$src/sse.js" "$vendor/htmx/sse.min.js"
src="$(fetch swagger-ui-dist "$SWAGGER_UI")"
cp "$src/swagger-ui-bundle.js" "$src/swagger-ui.css" "$src/LICENSE" "$vendor/swagger-ui/"
# The CAD studio's 3D view (issue 18): the core, the WebGL renderer's module, the STL
# loader and the orbit controls — nothing else of three.js. The addons import 'three',
# which the studio page's import map points at three.module.min.js.
src="$(fetch three "$THREE")"
cp "$src/build/three.core.min.js" "$src/build/three.module.min.js" "$src/LICENSE" "$vendor/three/"
cp "$src/examples/jsm/loaders/STLLoader.js" "$src/examples/jsm/controls/OrbitControls.js" "$vendor/three/"
# The operations view's charts (issue 18).
src="$(fetch uplot "$UPLOT")"
cp "$src/dist/uPlot.iife.min.js" "$src/dist/uPlot.min.css" "$src/LICENSE" "$vendor/uplot/"

cat > "$vendor/VERSIONS" <<VERSIONS
htmx.org $HTMX
htmx-ext-sse $HTMX_SSE
swagger-ui-dist $SWAGGER_UI
three $THREE
uplot $UPLOT
VERSIONS

rm -rf "$test_vendor"
mkdir -p "$test_vendor/axe-core"
src="$(fetch axe-core "$AXE_CORE")"
cp "$src/axe.min.js" "$src/LICENSE" "$test_vendor/axe-core/"
cat > "$test_vendor/VERSIONS" <<VERSIONS
axe-core $AXE_CORE
VERSIONS

# The manifests: every vendored file's SHA-256, sorted by path.
for dir in "$vendor" "$test_vendor"; do
    (cd "$dir" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort \
        | xargs sha256sum > SHA256SUMS)
    echo "vendored into $dir:"
    cat "$dir/VERSIONS"
done
