#!/usr/bin/env bash
# Prepares a Debian 12 machine (root) for the integration tests of the Docker path:
#  - Debian's docker.io, dockerd running (started here in the background when it is not),
#  - a test-environment runtime workaround for `docker run --privileged` (below),
#  - user qemutest (made by prepare.sh) in the docker group,
#  - local images made with `docker import` (no registry is reachable):
#      local/busybox:test        busybox for this machine's architecture (the tests' docker-image)
#      local/busybox-arm64:test  linux/arm64 busybox, for the foreign `docker run`/`docker build` proofs
#  - the real docker buildx plugin (buildx.sh)
#  - a real BuildKit image, local/buildkit:test, compiled once per machine from Debian sources (buildkit.sh)
#  - a local registry on 127.0.0.1:5000 serving it as 127.0.0.1:5000/buildkit:test (registry.sh)
# Idempotent: every step checks first, so a re-run is quick and prints nothing.
#
# The workaround: this VM's capability bounding set lacks CAP_SYS_RESOURCE, so runc
# fails a privileged container ("unable to apply caps: operation not permitted").
# Real runners do not have that problem and the product keeps the standard command
# line; here dockerd's default runtime is a small runc wrapper that removes the
# capabilities the machine does not have from the container's spec.
set -euo pipefail

CACHE=/var/cache/setup-qemu-binfmt-test
DEBS="$CACHE/debs"
WRAPPER=/usr/local/libexec/setup-qemu-binfmt-test/runc
RUNTIME=qemutest-runc
DAEMON_JSON=/etc/docker/daemon.json
DOCKERD_LOG=/var/log/setup-qemu-binfmt-test-dockerd.log
NATIVE_IMAGE=local/busybox:test
ARM64_IMAGE=local/busybox-arm64:test

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root docker.sh

# --- docker.io --------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
  apt_install() { quiet apt-get install -y -qq --no-install-recommends docker.io; }
  apt_install || { quiet apt-get update -qq || true; apt_install; }
fi

# --- runc wrapper (test-environment workaround, see above) ------------------
RUNC=$(command -v runc || echo /usr/sbin/runc)
want_wrapper=$(cat <<EOF
#!/bin/sh
# setup-qemu-binfmt tests: runc, minus the capabilities this machine's bounding set lacks.
# Only CAP_SYS_RESOURCE (bit 24) is known to be missing on the test VMs. It goes from the
# bundle's config.json (create/run: docker run --privileged) and from the process spec of
# runc exec --process FILE (docker exec into a privileged container, as buildx's
# docker-container driver does to reach its BuildKit with buildctl dial-stdio).
bnd=\$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
if [ -n "\$bnd" ] && [ \$(( 0x\$bnd >> 24 & 1 )) = 0 ]; then
  bundle=
  spec=
  prev=
  for a in "\$@"; do
    case "\$prev" in --bundle|-b) bundle=\$a ;; --process|-p) spec=\$a ;; esac
    case "\$a" in --bundle=*) bundle=\${a#--bundle=} ;; --process=*) spec=\${a#--process=} ;; esac
    prev=\$a
  done
  # runc exec: the process spec; create/run: the bundle (the working directory when not given).
  if [ -z "\$spec" ]; then
    [ -z "\$bundle" ] && bundle=.
    spec=\$bundle/config.json
  fi
  if [ -n "\$spec" ] && [ -f "\$spec" ]; then
    sed -i -e 's/"CAP_SYS_RESOURCE",//g' -e 's/,"CAP_SYS_RESOURCE"//g' -e 's/"CAP_SYS_RESOURCE"//g' "\$spec"
  fi
fi
exec $RUNC "\$@"
EOF
)
if [ "$(cat "$WRAPPER" 2>/dev/null)" != "$want_wrapper" ]; then
  mkdir -p "$(dirname "$WRAPPER")"
  printf '%s\n' "$want_wrapper" >"$WRAPPER.tmp"
  chmod 0755 "$WRAPPER.tmp"
  mv "$WRAPPER.tmp" "$WRAPPER"
fi

# daemon.json: add our runtime and make it the default, keeping anything else there.
mkdir -p "$(dirname "$DAEMON_JSON")"
merged=$(node -e '
  const fs = require("fs")
  const [file, name, path] = process.argv.slice(1)
  let cfg = {}
  try { cfg = JSON.parse(fs.readFileSync(file, "utf8")) } catch (e) { if (e.code !== "ENOENT") throw e }
  cfg.runtimes = { ...(cfg.runtimes || {}), [name]: { path } }
  cfg["default-runtime"] = name
  process.stdout.write(JSON.stringify(cfg, null, 2) + "\n")
' "$DAEMON_JSON" "$RUNTIME" "$WRAPPER")
config_changed=0
if [ "$(cat "$DAEMON_JSON" 2>/dev/null)" != "$merged" ]; then
  printf '%s\n' "$merged" >"$DAEMON_JSON"
  config_changed=1
fi

# --- dockerd ----------------------------------------------------------------
wait_docker() {
  local i
  for i in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "docker.sh: dockerd did not come up within 60 s; its log ($DOCKERD_LOG):" >&2
  tail -n 30 "$DOCKERD_LOG" >&2 || true
  return 1
}

if ! pgrep -x dockerd >/dev/null 2>&1; then
  # setsid and no inherited descriptors beyond 0-2: dockerd outlives this script and any test runner,
  # and a caller's flock(1) lock is not held for its life.
  (
    close_inherited_fds
    setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  )
  wait_docker
elif [ "$config_changed" = 1 ] || [ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" != "$RUNTIME" ]; then
  # runtimes and default-runtime are reloadable: no restart, running containers stay.
  kill -HUP "$(pgrep -x dockerd | head -n 1)"
  for _ in $(seq 1 20); do
    [ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" = "$RUNTIME" ] && break
    sleep 0.5
  done
fi
wait_docker
if [ "$(docker info --format '{{.DefaultRuntime}}')" != "$RUNTIME" ]; then
  echo "docker.sh: dockerd does not use the $RUNTIME runtime from $DAEMON_JSON" >&2
  exit 1
fi

# --- the unprivileged docker user ------------------------------------------
if id -u qemutest >/dev/null 2>&1 && ! id -nG qemutest | tr ' ' '\n' | grep -qx docker; then
  usermod -aG docker qemutest
fi

# --- local images -----------------------------------------------------------
native=$(dpkg --print-architecture)
busybox_deb() {
  local arch=$1 deb
  deb=$(compgen -G "$DEBS/busybox-static_*_${arch}.deb" | sort | tail -n 1 || true)
  if [ -z "$deb" ]; then
    mkdir -p "$DEBS"
    (cd "$DEBS" && quiet apt-get download -qq -o APT::Sandbox::User=root "busybox-static:$arch") ||
      { quiet apt-get update -qq || true; (cd "$DEBS" && quiet apt-get download -qq -o APT::Sandbox::User=root "busybox-static:$arch"); }
    deb=$(compgen -G "$DEBS/busybox-static_*_${arch}.deb" | sort | tail -n 1)
  fi
  echo "$deb"
}

# import_busybox <image> <debian arch> <docker platform>
import_busybox() {
  local image=$1 arch=$2 platform=$3 deb work applets
  if docker image inspect "$image" >/dev/null 2>&1; then return 0; fi
  deb=$(busybox_deb "$arch")
  work=$(mktemp -d)
  dpkg-deb -x "$deb" "$work/x"
  mkdir -p "$work/root/bin" "$work/root/tmp" "$work/root/proc" "$work/root/sys" "$work/root/dev" "$work/root/etc"
  chmod 1777 "$work/root/tmp"
  cp "$work/x/bin/busybox" "$work/root/bin/busybox"
  # The applet list comes from the native busybox (same version and configuration):
  # a foreign one cannot run before emulators are registered.
  dpkg-deb -x "$(busybox_deb "$native")" "$work/native"
  applets=$("$work/native/bin/busybox" --list)
  for a in $applets; do
    [ "$a" = busybox ] || ln -s busybox "$work/root/bin/$a"
  done
  tar --owner=0 --group=0 --numeric-owner -C "$work/root" -c . |
    quiet docker import --platform "$platform" -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$image"
  # Debian's dockerd 20.10 records its own architecture for imported images whatever
  # --platform says; `docker build --platform` needs the true one: fix the label.
  if [ "$(docker image inspect --format '{{.Os}}/{{.Architecture}}' "$image")" != "$platform" ]; then
    mkdir "$work/saved"
    docker save "$image" | tar -C "$work/saved" -xf -
    node -e '
      const fs = require("fs"), path = require("path"), crypto = require("crypto")
      const [dir, platform] = process.argv.slice(1)
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"))
      const config = JSON.parse(fs.readFileSync(path.join(dir, manifest[0].Config), "utf8"))
      const [os, arch, variant] = platform.split("/")
      Object.assign(config, { os, architecture: arch }, variant ? { variant } : {})
      const text = JSON.stringify(config)
      fs.rmSync(path.join(dir, manifest[0].Config))
      manifest[0].Config = crypto.createHash("sha256").update(text).digest("hex") + ".json"
      fs.writeFileSync(path.join(dir, manifest[0].Config), text)
      fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest))
    ' "$work/saved" "$platform"
    quiet docker rmi "$image"
    tar -C "$work/saved" -c . | quiet docker load
  fi
  rm -rf "$work"
}

import_busybox "$NATIVE_IMAGE" "$native" "linux/$native"
import_busybox "$ARM64_IMAGE" arm64 linux/arm64

# The workaround must hold: a privileged container starts.
if ! out=$(docker run --rm --privileged --network none "$NATIVE_IMAGE" true 2>&1); then
  echo "docker.sh: a privileged container does not start: $out" >&2
  exit 1
fi

# --- the real docker buildx plugin (Debian trixie's docker-buildx) ---------
bash "$(dirname "$0")/buildx.sh"

# --- a real BuildKit and a registry to pull it from ------------------------
bash "$(dirname "$0")/buildkit.sh"
bash "$(dirname "$0")/registry.sh"
