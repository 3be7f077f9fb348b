#!/usr/bin/env bash
# Builds the nightly npm package: kiln-X.Y.Z-nightly.YYYYMMDD.<sha>.tgz, installable with
# `npm install <tgz>` on linux-x64 without cmake, a compiler or network beyond the registry (docs/nightly.md).
#
#   tools/nightly.sh [out-dir]     (default: build/nightly)
#
# It carries what a source install builds in `prepare`: the compiled JavaScript with declarations,
# the native CPU addon prebuilt for a portable instruction set (KILN_NIGHTLY_CPU_ARCH, default
# x86-64-v3: AVX2/FMA), and the embedded fortune model compiled for the CPU as an engine artifact
# with its kernels built (the CPU backend otherwise compiles generated C with cc at run time).
# Writes <out-dir>/<tarball> and <out-dir>/index.json (the builds by commit); stages everything in
# <out-dir>/work, never in the checkout, so the tree's own build and default model are untouched.
# Needs what `npm ci` needs (cmake, a C/C++ compiler) and a checkout where `npm ci` has run.
set -euo pipefail
cd "$(dirname "$0")/.."

out="$(realpath -m "${1:-build/nightly}")"
platform="$(node -p 'process.platform + "-" + process.arch')"
if [[ "$platform" != "linux-x64" ]]; then
  echo "nightly: prebuilds are made for linux-x64 only; this machine is $platform" >&2
  exit 2
fi
cpu_arch="${KILN_NIGHTLY_CPU_ARCH:-x86-64-v3}"

# X.Y.Z-nightly.YYYYMMDD.<sha>: semver orders nightlies by date, below the X.Y.Z release. A sha of
# digits only with a leading zero is not a valid semver identifier, so it gets git describe's "g".
base="$(node -p 'require("./package.json").version')"
commit="$(git rev-parse HEAD)"
sha="$(git rev-parse --short=7 HEAD)"
[[ "$sha" =~ ^0[0-9]*$ ]] && sha="g$sha"
dirty=false
# a build of uncommitted edits is not the commit it names: say so in the version and the index
if [[ -n "$(git status --porcelain)" ]]; then dirty=true; fi
version="$base-nightly.$(date -u +%Y%m%d).$sha"
$dirty && version="$version.dirty"

work="$out/work"
stage="$work/package"
rm -rf "$work"
mkdir -p "$stage" "$out"
started=$SECONDS
echo "nightly: kiln $version ($platform, addon -march=$cpu_arch) in $out"

# 1. the JavaScript the package runs, with declarations for TypeScript consumers
npx tsc -p tsconfig.build.json --declaration --outDir "$stage/build/js"
touch "$stage/build/js/.stamp"
echo "nightly: JavaScript compiled ($((SECONDS - started)) s)"

# 2. the native addon, for a portable instruction set, in its own build folder
npx cmake-js compile --out "$work/native" --CDKILN_CPU_ARCH="$cpu_arch" > "$work/native.log" 2>&1 || {
  cat "$work/native.log" >&2
  exit 1
}
mkdir -p "$stage/prebuilds/$platform"
cp "$work/native/Release/kiln_cpu.node" "$stage/prebuilds/$platform/kiln_cpu.node"
echo "nightly: native addon built ($((SECONDS - started)) s)"

# 3. the sources beside the JavaScript (bin/kiln.js runs them through tsx when plugins are loaded,
# and checks the build against them), the CUDA kernel sources, and the manifest
cp -R bin cli compiler runtime models README.md package.json "$stage/"
mkdir -p "$stage/kernels"
cp -R kernels/cuda "$stage/kernels/cuda"

# 4. the default model as a CPU engine artifact with its kernels built here, for the same portable
# level as the addon: the executor runs a stored library on any CPU that has the level
KILN_CPU_ARCH="$cpu_arch" node bin/kiln.js compile assets/fortune-llama --target cpu -o "$stage/prebuilds/$platform/fortune-llama" > "$work/compile.log"
echo "nightly: fortune-llama compiled ($((SECONDS - started)) s)"

# 5. the installable manifest, declarations pointing at .js, the dependencies pinned to the
# versions tested here (kiln's lock, pruned by npm to what the package depends on), then the
# tarball (no scripts run)
node tools/nightly-package.mjs stage "$stage" "$version" "$commit" "$cpu_arch"
cp package-lock.json "$stage/package-lock.json"
(cd "$stage" && npm install --package-lock-only --offline --ignore-scripts --no-audit --no-fund --loglevel=error > /dev/null)
node tools/nightly-package.mjs shrinkwrap "$stage"
(cd "$stage" && npm pack --ignore-scripts --json --pack-destination "$out" > "$work/pack.json")
node tools/nightly-package.mjs index "$out" "$work/pack.json" "$version" "$commit" "$dirty"
echo "nightly: done in $((SECONDS - started)) s"
