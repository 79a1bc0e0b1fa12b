#!/usr/bin/env bash
# Installs the real `docker buildx` CLI plugin for the builder tests: Debian trixie's
# docker-buildx .deb, fetched with an apt configuration of its own (private Dir::Etc,
# Dir::State and Dir::Cache with one trixie source), so the machine's own sources stay
# bookworm and nothing else from trixie is installed. Only the plugin binary is copied.
# Idempotent: a working plugin of the wanted version is left alone.
set -euo pipefail

WANT=0.13.1
PLUGIN_DIR=/usr/libexec/docker/cli-plugins
PLUGIN=$PLUGIN_DIR/docker-buildx
APT_ROOT=/var/cache/setup-qemu-binfmt-test/apt-trixie

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root buildx.sh

have=$("$PLUGIN" version 2>/dev/null | awk '{print $2}' || true)
case "${have#v}" in "$WANT" | "$WANT"+*) exit 0 ;; esac

uri=$(debian_uri) || { echo "buildx.sh: no Debian bookworm source found under /etc/apt to derive the mirror from" >&2; exit 1; }
mkdir -p "$APT_ROOT/etc/apt/sources.list.d" "$APT_ROOT/etc/apt/apt.conf.d" "$APT_ROOT/etc/apt/preferences.d" \
  "$APT_ROOT/state/lists/partial" "$APT_ROOT/cache/archives/partial" "$APT_ROOT/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" >"$APT_ROOT/etc/apt/sources.list"
APT_OPTS=(
  -o "Dir::Etc=$APT_ROOT/etc/apt"
  -o "Dir::Etc::sourcelist=$APT_ROOT/etc/apt/sources.list"
  -o "Dir::Etc::sourceparts=$APT_ROOT/etc/apt/sources.list.d"
  -o "Dir::Etc::trusted=/etc/apt/trusted.gpg"
  -o "Dir::Etc::trustedparts=/etc/apt/trusted.gpg.d"
  -o "Dir::State=$APT_ROOT/state"
  -o "Dir::State::status=/var/lib/dpkg/status"
  -o "Dir::Cache=$APT_ROOT/cache"
  -o "APT::Architectures=amd64"
  -o "APT::Sandbox::User=root"
)

deb=$(compgen -G "$APT_ROOT/debs/docker-buildx_${WANT}*_amd64.deb" | sort | tail -n 1 || true)
if [ -z "$deb" ]; then
  quiet apt-get "${APT_OPTS[@]}" update -qq
  (cd "$APT_ROOT/debs" && quiet apt-get "${APT_OPTS[@]}" download -qq docker-buildx)
  deb=$(compgen -G "$APT_ROOT/debs/docker-buildx_*_amd64.deb" | sort | tail -n 1 || true)
  [ -n "$deb" ] || { echo "buildx.sh: apt-get download docker-buildx left no .deb in $APT_ROOT/debs" >&2; exit 1; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work"
mkdir -p "$PLUGIN_DIR"
install -m 0755 "$work/usr/libexec/docker/cli-plugins/docker-buildx" "$PLUGIN.tmp"
mv "$PLUGIN.tmp" "$PLUGIN"
"$PLUGIN" version >/dev/null || { echo "buildx.sh: the installed $PLUGIN does not run" >&2; exit 1; }
