#!/usr/bin/env bash
# Builds (once per machine) a real BuildKit image for the builder tests, offline, from Debian sources:
#   local/buildkit:test   buildkitd (entrypoint) + buildctl, runc, busybox, /etc/buildkit/buildkitd.toml
# No BuildKit image can be pulled here and Debian packages no buildkit binary, but trixie's
# golang-github-docker-docker-dev ships the moby/buildkit tree (v0.13.2 with Debian's fixes). It is
# compiled with trixie's Go in GOPATH mode (GO111MODULE=off CGO_ENABLED=0) against a dozen trixie
# golang-*-dev packages and two from sid, all downloaded and unpacked (never installed) with apt
# configurations of their own, so the machine's sources stay bookworm. Three parts Debian lacks are
# stubbed: the gha and azblob cache backends and the fuse-overlayfs snapshotter.
# Everything lives under $CACHE/buildkit, outside the clone: about 7 minutes the first time on
# 2 cores, then a re-run finds the image (or re-imports it from the cached binaries) and prints nothing.
set -euo pipefail

CACHE=/var/cache/setup-qemu-binfmt-test
W=$CACHE/buildkit
DEBS=$CACHE/debs
IMAGE=local/buildkit:test
BKV=v0.13.2+debian26.1.5-9+deb13u1
# Changes whenever what goes into the image changes: an image with another recipe is rebuilt.
RECIPE="setup-qemu-binfmt-test buildkit $BKV recipe 1"

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root buildkit.sh

[ "$(docker image inspect -f '{{.Comment}}' "$IMAGE" 2>/dev/null || true)" = "$RECIPE" ] && exit 0
mkdir -p "$W" "$DEBS"
[ -x "$W/out/buildkitd" ] || echo "buildkit.sh: building BuildKit $BKV from Debian sources into $W (once per machine; minutes)" >&2

# apt_state SUITE: an apt configuration of its own for one suite of the machine's mirror, with an
# empty dpkg status (the whole dependency closure is downloaded, nothing is installed); sets APT.
apt_state() {
  local S=$W/apt-$1 uri
  uri=$(debian_uri) || { echo "buildkit.sh: no Debian bookworm source found under /etc/apt to derive the mirror from" >&2; exit 1; }
  mkdir -p "$S/etc/apt/apt.conf.d" "$S/etc/apt/preferences.d" "$S/etc/apt/sources.list.d" "$S/lists/partial" \
    "$S/cache/archives/partial" "$W/dl/$1/partial"
  : >"$S/status"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $1 main" >"$S/etc/apt/sources.list"
  APT=(-o "Dir::Etc=$S/etc/apt" -o "Dir::State=$S" -o "Dir::State::Lists=$S/lists" -o "Dir::State::status=$S/status"
    -o "Dir::Cache=$S/cache" -o "Dir::Cache::archives=$W/dl/$1" -o "Dir::Etc::trusted=/etc/apt/trusted.gpg"
    -o "Dir::Etc::trustedparts=/etc/apt/trusted.gpg.d" -o APT::Architectures=amd64 -o APT::Install-Recommends=0
    -o APT::Sandbox::User=root -o Debug::NoLocking=1)
  compgen -G "$S/lists/*Packages*" >/dev/null || quiet apt-get "${APT[@]}" update -qq
}

# --- 1. Go, the BuildKit tree and its Go dependencies, unpacked into $W/root -------------------
R=$W/root
if [ ! -f "$W/root.done" ]; then
  apt_state trixie
  quiet apt-get "${APT[@]}" install -y -qq --download-only golang-go golang-github-docker-docker-dev \
    golang-github-agext-levenshtein-dev golang-github-aws-aws-sdk-go-v2-dev golang-github-containerd-console-dev \
    golang-github-containerd-nydus-snapshotter-dev golang-github-containerd-stargz-snapshotter-dev \
    golang-github-coreos-go-systemd-dev golang-github-gofrs-flock-dev golang-github-google-shlex-dev \
    golang-github-mitchellh-hashstructure-v2-dev golang-github-pkg-profile-dev golang-github-spdx-tools-golang-dev \
    golang-github-tonistiigi-vt100-dev
  apt_state sid
  (cd "$W/dl/sid" && quiet apt-get "${APT[@]}" download -qq golang-github-tonistiigi-go-archvariant-dev \
    golang-github-package-url-packageurl-go-dev)
  rm -rf "$R"
  mkdir -p "$R"
  for deb in "$W"/dl/trixie/*.deb "$W"/dl/sid/*.deb; do dpkg-deb -x "$deb" "$R"; done
  touch "$W/root.done"
fi

# --- 2. a GOPATH overlay: buildkit with stubs for what Debian lacks; go-systemd's /v22 import path --
G=$W/gopath/src
if [ ! -f "$W/gopath.done" ]; then
  rm -rf "$W/gopath" "$W/out"
  mkdir -p "$G/github.com/moby" "$G/github.com/coreos/go-systemd" "$G/github.com/containerd/fuse-overlayfs-snapshotter"
  ln -s "$R/usr/share/gocode/src/github.com/coreos/go-systemd" "$G/github.com/coreos/go-systemd/v22"
  cp -a "$R/usr/share/gocode/src/github.com/moby/buildkit" "$G/github.com/moby/buildkit"
  cat >"$G/github.com/containerd/fuse-overlayfs-snapshotter/stub.go" <<'EOF'
// Package fuseoverlayfs stands in for fuse-overlayfs-snapshotter, which Debian does not package.
package fuseoverlayfs

import (
	"errors"

	"github.com/containerd/containerd/snapshots"
)

var errMissing = errors.New("fuse-overlayfs snapshotter is not in this build")

func Supported(string) error { return errMissing }

func NewSnapshotter(string, ...interface{}) (snapshots.Snapshotter, error) { return nil, errMissing }
EOF
  for backend in gha azblob; do
    dir=$G/github.com/moby/buildkit/cache/remotecache/$backend
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/stub.go" <<EOF
// Package $backend stands in for BuildKit's $backend cache backend, whose SDK Debian does not package.
package $backend

import (
	"context"

	"github.com/moby/buildkit/cache/remotecache"
	"github.com/moby/buildkit/session"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/pkg/errors"
)

func ResolveCacheExporterFunc() remotecache.ResolveCacheExporterFunc {
	return func(context.Context, session.Group, map[string]string) (remotecache.Exporter, error) {
		return nil, errors.New("the $backend cache is not in this build")
	}
}

func ResolveCacheImporterFunc() remotecache.ResolveCacheImporterFunc {
	return func(context.Context, session.Group, map[string]string) (remotecache.Importer, ocispecs.Descriptor, error) {
		return nil, ocispecs.Descriptor{}, errors.New("the $backend cache is not in this build")
	}
}
EOF
  done
  touch "$W/gopath.done"
fi

# --- 3. compile (about 4 minutes on 2 cores; the Go build cache stays in $W/gocache) ------------
if [ ! -x "$W/out/buildkitd" ] || [ ! -x "$W/out/buildctl" ]; then
  GOROOT=$(echo "$R"/usr/lib/go-1.*)
  quiet env GOROOT="$GOROOT" GOPATH="$W/gopath:$R/usr/share/gocode" GO111MODULE=off CGO_ENABLED=0 GOTOOLCHAIN=local \
    GOFLAGS= GOCACHE="$W/gocache" HOME="$W" "$GOROOT/bin/go" build -trimpath -o "$W/out.tmp/" \
    -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$BKV -X github.com/moby/buildkit/version.Revision=debian" \
    github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
  rm -rf "$W/out"
  mv "$W/out.tmp" "$W/out"
fi

# --- 4. the image's root filesystem -------------------------------------------------------------
F=$(mktemp -d)
trap 'rm -rf "$F"' EXIT
mkdir -p "$F"/{bin,sbin,usr/bin,usr/sbin,usr/lib/runc,etc/buildkit,tmp,proc,sys,dev,run,root,var/lib/buildkit}
chmod 1777 "$F/tmp"
cp "$W/out/buildkitd" "$W/out/buildctl" "$F/usr/bin/"
deb=$(compgen -G "$DEBS/busybox-static_*_amd64.deb" | sort | tail -n 1 || true)
if [ -z "$deb" ]; then
  (cd "$DEBS" && quiet apt-get download -qq -o APT::Sandbox::User=root busybox-static:amd64)
  deb=$(compgen -G "$DEBS/busybox-static_*_amd64.deb" | sort | tail -n 1)
fi
dpkg-deb -x "$deb" "$F/bb"
mv "$F/bb/bin/busybox" "$F/bin/busybox"
rm -rf "$F/bb"
for applet in $("$F/bin/busybox" --list); do [ -e "$F/bin/$applet" ] || ln -s busybox "$F/bin/$applet"; done
# BuildKit's OCI worker runs RUN steps with runc: the machine's own (docker.io's dependency) and its libraries.
RUNC=$(command -v runc || echo /usr/sbin/runc)
cp "$RUNC" "$F/usr/lib/runc/runc"
for lib in $(ldd "$RUNC" | grep -o '/[^ ]*'); do
  mkdir -p "$F$(dirname "$lib")"
  cp -L "$lib" "$F$lib"
done
# The same test-machine workaround as docker.sh's wrapper, for the containers BuildKit itself starts:
# this VM's bounding set lacks CAP_SYS_RESOURCE, which runc would otherwise fail to apply.
cat >"$F/usr/sbin/runc" <<'EOF'
#!/bin/sh
bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
if [ -n "$bnd" ] && [ $(( 0x$bnd >> 24 & 1 )) = 0 ]; then
  bundle= spec= prev=
  for a in "$@"; do
    case "$prev" in --bundle|-b) bundle=$a ;; --process|-p) spec=$a ;; esac
    case "$a" in --bundle=*) bundle=${a#--bundle=} ;; --process=*) spec=${a#--process=} ;; esac
    prev=$a
  done
  [ -n "$spec" ] || spec=${bundle:-.}/config.json
  [ -n "$spec" ] && [ -f "$spec" ] && sed -i -e 's/"CAP_SYS_RESOURCE",//g' -e 's/,"CAP_SYS_RESOURCE"//g' -e 's/"CAP_SYS_RESOURCE"//g' "$spec"
fi
exec /usr/lib/runc/runc "$@"
EOF
chmod 0755 "$F/usr/sbin/runc"
# A registry on 127.0.0.1:5000 (registry.sh) speaks plain http.
cat >"$F/etc/buildkit/buildkitd.toml" <<'EOF'
[worker.oci]
  enabled = true
[worker.containerd]
  enabled = false
[registry."127.0.0.1:5000"]
  http = true
  insecure = true
EOF
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$F/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$F/etc/group"

old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
tar --owner=0 --group=0 --numeric-owner -C "$F" -c . |
  quiet docker import -m "$RECIPE" -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'VOLUME /var/lib/buildkit' -c 'ENTRYPOINT ["buildkitd"]' - "$IMAGE"
[ -z "$old" ] || [ "$old" = "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ] || quiet docker rmi "$old" || true

# It must answer: buildkitd starts in a privileged container and buildctl reaches it through docker exec
# (what buildx's docker-container driver does), which needs docker.sh's runc wrapper on this machine.
c=$(docker run -d --privileged --network none "$IMAGE")
ok=0
for _ in $(seq 1 40); do
  if docker exec "$c" buildctl debug workers >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.5
done
logs=$(docker logs "$c" 2>&1 | tail -n 20)
quiet docker rm -f -v "$c"
if [ "$ok" != 1 ]; then
  echo "buildkit.sh: $IMAGE does not answer buildctl through docker exec; its log:" >&2
  echo "$logs" >&2
  docker rmi "$IMAGE" >/dev/null 2>&1 || true
  exit 1
fi
