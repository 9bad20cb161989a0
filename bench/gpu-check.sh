#!/usr/bin/env bash
# The one-shot GPU check (issue 26): on a machine with an NVIDIA GPU and nothing to download, one run
# (well under 8 minutes) from the repository root writes OUTDIR/gpu-check.json (one report, updated
# after every step) and OUTDIR/gpu-check.log (everything printed), plus OUTDIR/parity.json (vitest's own).
#
#   bench/gpu-check.sh [--dry-run] [--budget-s 420] OUTDIR
#
# 1. makes the GPU usable for Dawn (this script): node and node_modules from the checkout or unpacked
#    from the carry folder (.gpu-carry/, built by bench/gpu-carry.sh); the Vulkan/EGL loaders from the
#    system, else unpacked from the carried Debian packages into a private folder (never over /); the
#    NVIDIA Vulkan ICD found (VK_DRIVER_FILES, the driver's folders, or written for libGLX_nvidia.so.0);
# 2.–5. bench/gpu-check/run.ts: the adapter and its features, the webgpu parity suites on it, the
#    benchmarks (kernels, engine, TTFT) on generated SmolLM2-135M- and Qwen2.5-1.5B-shaped models with
#    f16 weights, and llama.cpp's GPU builds on the same weights where carried (else reported not run).
#
# --dry-run: the same steps at tiny shapes on Mesa llvmpipe (KVRAG_WEBGPU_ADAPTER=opengl), one parity
# file, llama.cpp's CPU build in place of its GPU builds (test/unit/gpu-check.test.ts runs it).
set -uo pipefail

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }

dry=0
budget=420
out=
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1 ;;
    --budget-s) budget=${2:?--budget-s needs a number of seconds}; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "gpu-check: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "gpu-check: one OUTDIR only" >&2; exit 2; }; out=$1 ;;
  esac
  shift
done
[ -n "$out" ] || { usage >&2; exit 2; }
case $budget in '' | *[!0-9]*) echo "gpu-check: --budget-s must be whole seconds, got '$budget'" >&2; exit 2 ;; esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
carry=${KVRAG_GPU_CARRY:-$root/.gpu-carry}
# prefix of the driver folders searched in step 1 (empty: /; test/unit/gpu-check.test.ts points it at a fake driver)
sysroot=${KVRAG_GPU_CHECK_SYSROOT:-}
start=$(date +%s)

main() {
  cd "$root" || return 1
  work=$(mktemp -d "${TMPDIR:-/tmp}/kvrag-gpu-check.XXXXXX") || return 1
  trap 'rm -rf "$work"' EXIT
  setup=$work/setup.env
  status=passed
  fact() { printf '%s=%s\n' "$1" "$2" >>"$setup"; echo "[gpu-check] $1: $2"; }
  problem() { status=failed; fact problem "$1"; }
  echo "=== [gpu-check] step 1: make the GPU usable for Dawn ($([ $dry = 1 ] && echo 'dry run' || echo 'GPU run'))"
  fact dry_run "$dry"
  fact carry_dir "$carry"
  fact commit "$(git rev-parse HEAD 2>/dev/null || sed -n 's/.*"commit": *"\([0-9a-f]*\)".*/\1/p' "$carry/MANIFEST.json" 2>/dev/null || echo unknown)"

  unxz_to() { if command -v xz >/dev/null; then xz -dc "$1" >"$2"; else
    python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi; }
  untar_xz() { if command -v xz >/dev/null; then xz -dc "$1" | tar -x -C "$2"; else
    python3 -c 'import tarfile,sys; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$1" "$2"; fi; }
  node_ok() { "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 18) ? 0 : 1)' 2>/dev/null; }
  # the dynamic linker's cache (ldconfig lives in /sbin, which a minimal PATH may lack)
  libs=$(PATH=$PATH:/sbin:/usr/sbin ldconfig -p 2>/dev/null)
  in_cache() { grep -q "^[[:space:]]*$1 " <<<"$libs"; }
  cached() { awk -v n="$1" '$1 == n { print $NF; exit }' <<<"$libs"; }

  # node: the checkout's pinned Node, else the carried one, else a system Node >= 22.18
  node_bin=
  if [ -x node_modules/.bin/node ] && node_ok node_modules/.bin/node; then
    node_bin=$(readlink -f node_modules/.bin/node); fact node_source checkout
  elif [ -f "$carry/node-linux-x64.xz" ]; then
    mkdir -p "$work/bin" && unxz_to "$carry/node-linux-x64.xz" "$work/bin/node" && chmod +x "$work/bin/node" &&
      node_ok "$work/bin/node" && node_bin=$work/bin/node && fact node_source carried
  fi
  if [ -z "$node_bin" ] && command -v node >/dev/null && node_ok "$(command -v node)"; then
    node_bin=$(command -v node); fact node_source system
  fi
  [ -n "$node_bin" ] || { problem "no Node >= 22.18: not in node_modules, not carried ($carry/node-linux-x64.xz), not on PATH"; }

  # node_modules: the checkout's, else the carried subset
  if [ -d node_modules/vitest ] && [ -d node_modules/webgpu ]; then
    fact node_modules checkout
  elif [ -f "$carry/node_modules.tar.xz" ]; then
    untar_xz "$carry/node_modules.tar.xz" "$root" && fact node_modules carried || problem "unpacking $carry/node_modules.tar.xz failed"
  else
    problem "no node_modules and no $carry/node_modules.tar.xz (bench/gpu-carry.sh builds it)"
  fi

  # the compiled wasm kernels (git-ignored; the CPU backends of the parity suites need them)
  if ! ls gpu-runner/engine/backends/wasm/dist/kernels-*.wasm >/dev/null 2>&1 && [ -d "$carry/wasm-dist" ]; then
    mkdir -p gpu-runner/engine/backends/wasm/dist && cp "$carry"/wasm-dist/* gpu-runner/engine/backends/wasm/dist/ &&
      fact wasm_kernels carried
  fi

  # Vulkan/EGL loaders: the system's, else the carried Debian packages unpacked into $work (never over /);
  # only the libraries the system lacks are put on LD_LIBRARY_PATH
  mkdir -p "$work/lib"
  if ls "$carry"/debs/*.deb >/dev/null 2>&1; then
    for d in "$carry"/debs/*.deb; do dpkg -x "$d" "$work/sysroot" || problem "dpkg -x $d failed"; done
    for f in "$work"/sysroot/usr/lib/x86_64-linux-gnu/lib*.so.[0-9]; do
      [ -e "$f" ] || continue
      n=$(basename "$f")
      if in_cache "$n"; then fact system_lib "$n"; else ln -sf "$f" "$work/lib/$n"; fact carried_lib "$n"; fi
    done
  fi
  export LD_LIBRARY_PATH=$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  if in_cache libvulkan.so.1; then fact vulkan_loader system
  elif [ -e "$work/lib/libvulkan.so.1" ]; then fact vulkan_loader carried
  elif [ $dry = 1 ]; then fact vulkan_loader "none (the dry run needs none)"
  else problem "no libvulkan.so.1: not installed, not carried ($carry/debs)"; fi

  # the NVIDIA driver's libraries (libGLX_nvidia.so.0 is its Vulkan ICD; libcuda.so.1 for CUDA): from the
  # linker's cache, else from the driver's usual folders, which then go on LD_LIBRARY_PATH
  glx=
  for n in libGLX_nvidia.so.0 libcuda.so.1; do
    p=$(cached "$n")
    if [ -z "$p" ]; then
      for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/x86_64-linux-gnu/nvidia/current; do
        d=$sysroot$d
        [ -e "$d/$n" ] && { p=$d/$n; export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; break; }
      done
    fi
    fact "driver_$n" "${p:-none}"
    [ "$n" = libGLX_nvidia.so.0 ] && glx=$p
  done

  # the NVIDIA Vulkan ICD: VK_DRIVER_FILES / VK_ICD_FILENAMES, the driver's folders, or one written here
  icd=
  given=${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-}}
  for f in ${given//:/ } "$sysroot"/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json "$sysroot"/usr/share/vulkan/icd.d/nvidia_icd*.json \
    "$sysroot"/etc/vulkan/icd.d/nvidia_icd*.json "$sysroot"/usr/local/share/vulkan/icd.d/nvidia_icd*.json; do
    [ -f "$f" ] && { icd=$f; fact icd_source found; break; }
  done
  if [ -z "$icd" ] && [ -n "$glx" ]; then
    mkdir -p "$work/icd" && icd=$work/icd/nvidia_icd.json
    printf '{"file_format_version": "1.0.1", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' "$glx" >"$icd"
    fact icd_source "written for $glx"
  fi
  if [ -n "$icd" ]; then
    export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
    fact icd "$icd"
    fact icd_library "$(sed -n 's/.*"library_path": *"\([^"]*\)".*/\1/p' "$icd")"
  elif [ $dry = 0 ]; then
    problem "no NVIDIA Vulkan ICD: no nvidia_icd.json and no libGLX_nvidia.so.0"
  fi
  for f in "$sysroot"/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json "$sysroot"/usr/share/glvnd/egl_vendor.d/10_nvidia.json; do
    [ $dry = 0 ] && [ -f "$f" ] && { export __EGL_VENDOR_LIBRARY_FILENAMES=$f; fact egl_vendor "$f"; break; }
  done

  # what the CUDA peer would need, and the GPU itself
  for n in libcudart.so.13 libcublas.so.13; do
    p=$(cached "$n")
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
      [ -z "$p" ] && [ -e "$d/$n" ] && { p=$d/$n; export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; }
    done
    fact "cuda_$n" "${p:-none}"
  done
  if command -v nvidia-smi >/dev/null; then
    fact gpu "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
  else
    fact gpu "none (no nvidia-smi)"
  fi
  fact ld_library_path "$LD_LIBRARY_PATH"
  fact status "$status"

  [ -n "$node_bin" ] || { write_bare_report; return 1; }
  export PATH=$(dirname "$node_bin"):$PATH
  export KVRAG_WEBGPU_ADAPTER=${KVRAG_WEBGPU_ADAPTER:-$([ $dry = 1 ] && echo opengl || echo native)}
  left=$((budget - ($(date +%s) - start)))
  [ $left -gt 0 ] || left=0
  "$node_bin" bench/gpu-check/run.ts --out "$out" --work "$work" --setup "$setup" --budget-s "$left" \
    $([ $dry = 1 ] && echo --dry-run)
}

# without Node there is no run.ts: the report says so, with step 1's facts
write_bare_report() {
  {
    printf '{"kind": "kvrag-gpu-check", "version": 1, "dryRun": %s, "steps": [{"id": "setup", "part": 1, "status": "failed", "facts": [' \
      "$([ $dry = 1 ] && echo true || echo false)"
    sed 's/\\/\\\\/g; s/"/\\"/g; s/.*/"&"/' "$setup" | paste -sd, -
    printf ']}], "summary": {"ok": false}}\n'
  } >"$out/gpu-check.json"
}

main 2>&1 | tee "$out/gpu-check.log"
exit "${PIPESTATUS[0]}"
