#!/bin/bash
# Packs this machine's Node.js binary for a GPU machine that has none: writes <dest>/node.xz and
# <dest>/unpack.sh (default dest: .device). On the GPU machine, `bash <dest>/unpack.sh` puts the
# binary at /tmp/nodebin/node; check.sh does that and puts it first on the PATH.
set -euo pipefail
dest=${1:-.device}
node_bin=$(command -v node)
mkdir -p "$dest"
# re-compress only when the binary changed since the last pack
if [ ! -s "$dest/node.xz" ] || [ "$node_bin" -nt "$dest/node.xz" ]; then
  xz --threads=0 -6 --stdout "$node_bin" > "$dest/node.xz.tmp"
  mv "$dest/node.xz.tmp" "$dest/node.xz"
fi
node --version > "$dest/node.version"
cat > "$dest/unpack.sh" <<'UNPACK'
#!/bin/bash
# Unpacks the Node.js binary packed beside this script into /tmp/nodebin/node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/nodebin
if [ ! -x /tmp/nodebin/node ] || [ "$here/node.xz" -nt /tmp/nodebin/node ]; then
  xz --decompress --stdout "$here/node.xz" > /tmp/nodebin/node.tmp
  chmod +x /tmp/nodebin/node.tmp
  mv /tmp/nodebin/node.tmp /tmp/nodebin/node
fi
UNPACK
chmod +x "$dest/unpack.sh"
