#!/usr/bin/env bash
# Build the llama-cpp-python wheel once and keep it in the KittyLab cache.
#
# llama-cpp-python is published as an sdist only; compiling it takes minutes, so the wheel is
# built a single time (plain CPU build) into ${XDG_CACHE_HOME:-$HOME/.cache}/kittylab/wheels and
# scripts/setup.sh installs it from there with --find-links. Idempotent: does nothing when the
# wheel is already cached.
# Usage: scripts/llama-wheel.sh [python]   (default: python3.11)
set -euo pipefail

LLAMA_VERSION=0.3.36
PYTHON=${1:-${PYTHON:-python3.11}}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/kittylab/wheels"
mkdir -p "$WHEELS"

if ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  exit 0
fi

missing=""
for tool in cmake cc c++; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing the build tools llama.cpp needs:$missing"
  apt-get update -qq && apt-get install -y -qq cmake build-essential >/dev/null
  missing=""
  for tool in cmake cc c++; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
  done
fi
[ -z "$missing" ] \
  || { echo "llama-wheel: missing$missing (install cmake and a C/C++ compiler)" >&2; exit 2; }

echo "==> building llama-cpp-python $LLAMA_VERSION (CPU, one time, several minutes)"
tmp=$(mktemp -d "$WHEELS/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A portable CPU build: no GPU backends, no native-arch tuning (the cache may be shared).
CMAKE_ARGS="${KITTYLAB_LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}" \
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
  "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps \
  "llama-cpp-python==$LLAMA_VERSION" -w "$tmp"
mv "$tmp"/llama_cpp_python-*.whl "$WHEELS"/
echo "==> cached $(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)"
