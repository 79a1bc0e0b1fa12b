#!/usr/bin/env bash
# Prepares (as root) the rootless Docker the tests of install-mode userns use:
#  - Debian 12's rootlesskit, uidmap (newuidmap), slirp4netns and podman,
#  - user qemurootless: no sudo, not in the docker group, with subordinate uid/gid ranges,
#  - its rootless dockerd (Debian's dockerd-rootless.sh) running in the background, socket
#    /run/user/<uid>/docker.sock,
#  - the images docker.sh made (local/busybox:test, local/busybox-arm64:test) loaded into it, and
#    into that user's rootless Podman.
# Needs docker.sh first (the images come from the rootful daemon). Idempotent.
#
# /dev/net/tun is mode 0600 on these VMs, so slirp4netns cannot open it as a user:
# made 0666 here (a property of the test VM; on a normal machine it already is).
set -euo pipefail

USER_NAME=qemurootless
LOG=/var/log/setup-qemu-binfmt-test-rootless-dockerd.log
IMAGES=(local/busybox:test local/busybox-arm64:test)

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root rootless.sh

missing=()
for p in rootlesskit uidmap slirp4netns podman; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install() { quiet apt-get install -y -qq --no-install-recommends "${missing[@]}"; }
  apt_install || { quiet apt-get update -qq || true; apt_install; }
fi

id -u "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_NAME"
uid=$(id -u "$USER_NAME")
for f in /etc/subuid /etc/subgid; do
  grep -q "^$USER_NAME:" "$f" || echo "$USER_NAME:400000:65536" >>"$f"
done
[ "$(stat -c %a /dev/net/tun)" = 666 ] || chmod 0666 /dev/net/tun

runtime=/run/user/$uid
if [ ! -d "$runtime" ]; then
  mkdir -p "$runtime"
  chown "$USER_NAME:" "$runtime"
  chmod 0700 "$runtime"
fi

as_user() {
  su -s /bin/bash "$USER_NAME" -c "cd ~ && export XDG_RUNTIME_DIR=$runtime DOCKER_HOST=unix://$runtime/docker.sock PATH=/usr/sbin:/usr/bin:/sbin:/bin && $1"
}

# For commands that leave a process behind (the daemon, Podman's pause process): no descriptor
# beyond 0-2 is inherited, or a caller's flock(1) lock would be held for that process's life.
detached() {
  (
    close_inherited_fds
    as_user "$1"
  )
}

if ! as_user 'docker info >/dev/null 2>&1'; then
  : >"$LOG"
  chown "$USER_NAME:" "$LOG"
  # setsid: the daemon outlives this script and any test runner.
  detached "setsid /usr/share/docker.io/contrib/dockerd-rootless.sh >$LOG 2>&1 </dev/null &"
  for _ in $(seq 1 60); do
    as_user 'docker info >/dev/null 2>&1' && break
    sleep 1
  done
  if ! as_user 'docker info >/dev/null 2>&1'; then
    echo "rootless.sh: rootless dockerd did not come up within 60 s; its log ($LOG):" >&2
    tail -n 30 "$LOG" >&2 || true
    exit 1
  fi
fi

for image in "${IMAGES[@]}"; do
  if ! as_user "docker image inspect $image >/dev/null 2>&1"; then
    docker save "$image" | as_user 'docker load -q >/dev/null'
  fi
done

missing_podman=()
for image in "${IMAGES[@]}"; do
  detached "podman image inspect $image >/dev/null 2>&1" || missing_podman+=("$image")
done
if [ "${#missing_podman[@]}" -gt 0 ]; then
  saved=$(mktemp /tmp/rootless-images-XXXXXX.tar)
  docker save "${missing_podman[@]}" -o "$saved"
  chmod 0644 "$saved"
  detached "podman load -q -i $saved >/dev/null"
  rm -f "$saved"
fi
