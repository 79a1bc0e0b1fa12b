#!/usr/bin/env bash
# A local image registry for the builder tests, as a hosted runner has Docker Hub:
#  - Debian 12's docker-registry (2.8; the .deb unpacked under $CACHE/registry, not installed) serving
#    plain http on 127.0.0.1:5000, started here in the background when nothing answers there,
#  - 127.0.0.1:5000/buildkit:test, the image buildkit.sh made, pushed there, so the tests make the
#    docker-container driver pull its BuildKit image (driver-opts: image=127.0.0.1:5000/buildkit:test).
# Needs buildkit.sh first. Idempotent: a re-run is quick and prints nothing.
set -euo pipefail

CACHE=/var/cache/setup-qemu-binfmt-test
W=$CACHE/registry
DEBS=$CACHE/debs
ADDR=127.0.0.1:5000
LOG=/var/log/setup-qemu-binfmt-test-registry.log
LOCAL_IMAGE=local/buildkit:test
PUSHED=$ADDR/buildkit:test

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root registry.sh

if ! command -v curl >/dev/null 2>&1; then
  quiet apt-get install -y -qq --no-install-recommends curl || { quiet apt-get update -qq || true; quiet apt-get install -y -qq --no-install-recommends curl; }
fi

up() { curl -fsS -o /dev/null "http://$ADDR/v2/" 2>/dev/null; }

if ! up; then
  if [ ! -x "$W/x/usr/bin/docker-registry" ]; then
    mkdir -p "$DEBS"
    deb=$(compgen -G "$DEBS/docker-registry_*.deb" | sort | tail -n 1 || true)
    if [ -z "$deb" ]; then
      (cd "$DEBS" && quiet apt-get download -qq -o APT::Sandbox::User=root docker-registry) ||
        { quiet apt-get update -qq || true; (cd "$DEBS" && quiet apt-get download -qq -o APT::Sandbox::User=root docker-registry); }
      deb=$(compgen -G "$DEBS/docker-registry_*.deb" | sort | tail -n 1)
    fi
    rm -rf "$W/x"
    mkdir -p "$W"
    dpkg-deb -x "$deb" "$W/x"
  fi
  mkdir -p "$W/data"
  cat >"$W/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $W/data
  delete:
    enabled: true
http:
  addr: $ADDR
EOF
  # setsid and no inherited descriptors beyond 0-2: the registry outlives this script, and a
  # caller's flock(1) lock is not held for its life.
  (
    close_inherited_fds
    setsid "$W/x/usr/bin/docker-registry" serve "$W/config.yml" >"$LOG" 2>&1 </dev/null &
  )
  for _ in $(seq 1 40); do up && break; sleep 0.25; done
  if ! up; then
    echo "registry.sh: no registry answers on $ADDR; its log ($LOG):" >&2
    tail -n 20 "$LOG" >&2 || true
    exit 1
  fi
fi

# The pushed image is the local one (buildkit.sh may have rebuilt it since the last push).
want=$(docker image inspect -f '{{.Id}}' "$LOCAL_IMAGE")
have=$(docker image inspect -f '{{.Id}}' "$PUSHED" 2>/dev/null || true)
if [ "$have" != "$want" ] || ! curl -fsS -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "http://$ADDR/v2/buildkit/manifests/test"; then
  quiet docker tag "$LOCAL_IMAGE" "$PUSHED"
  quiet docker push "$PUSHED"
fi
