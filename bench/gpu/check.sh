#!/bin/bash
# The GPU check, for a machine with an NVIDIA GPU and no Node.js. From the repository root, with
# .device/ carried (made by `npx tsx bench/gpu/bundle.ts`):
#   bash bench/gpu/check.sh [--quick] [--budget <seconds>]
# Unpacks Node, then runs .device/main.js: kernel parity, golden parity on every supported
# fixture and the fortune model, the fortune model's greedy text, then timings; a table last.
# Everything is bounded by KILN_CHECK_TIMEOUT seconds (default 330). Where $OUT is a folder (the
# device tool's), the full log and the rows as JSON are written there too.
set -u
cd "$(dirname "$0")/../.." || exit 3
start=$(date +%s)
# on the device tool, $OUT comes back: keep the whole log and the rows as JSON there
json=()
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  exec > >(tee "$OUT/gpu_check.log") 2>&1
  json=(--json "$OUT/gpu_check.json")
fi
say() { echo "[check.sh +$(( $(date +%s) - start ))s] $*"; }

say "kiln GPU check in $(pwd) on $(hostname)"
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 | sed 's/^/[nvidia-smi] /'
else
  say "nvidia-smi not found (the check still tries the driver library)"
fi

for f in .device/main.js .device/node.xz .device/unpack.sh .device/node_modules/koffi/package.json; do
  if [ ! -e "$f" ]; then
    say "missing $f: run 'npx tsx bench/gpu/bundle.ts' and carry .device"
    exit 3
  fi
done

# always the Node the bundle was made with (the device machine has none)
say "unpacking Node $(cat .device/node.version 2>/dev/null)"
if ! bash .device/unpack.sh; then
  say "could not unpack .device/node.xz"
  exit 3
fi
export PATH=/tmp/nodebin:$PATH
node_bin=/tmp/nodebin/node
say "node $($node_bin --version)"

export KILN_CACHE_DIR=${KILN_CACHE_DIR:-/tmp/kiln-cache}
# the time budget follows the timeout (a minute kept for the sections running when it is reached,
# the table and the JSON), unless --budget is given
limit=${KILN_CHECK_TIMEOUT:-330}
budget=()
case " $* " in *" --budget "*) ;; *) budget=(--budget $(( limit > 120 ? limit - 60 : limit / 2 ))) ;; esac
say "running .device/main.js ${budget[*]+${budget[*]}} $* (CUBIN cache $KILN_CACHE_DIR)"
timeout --kill-after=10 "$limit" "$node_bin" .device/main.js ${json[@]+"${json[@]}"} ${budget[@]+"${budget[@]}"} "$@"
rc=$?
case $rc in
  0) say "all checks passed" ;;
  1) say "some checks FAILED (see the table above)" ;;
  2) say "the CUDA backend did not open (see the error above)" ;;
  124|137) say "TIMED OUT after ${limit}s (with --json, the rows measured so far are in it)" ;;
  *) say "main.js exited with status $rc" ;;
esac
exit $rc
