#!/usr/bin/env bash
# Prepares a Debian 12 machine (root) for the integration tests:
#  - apt packages the tests use (static QEMU, sudo, zstd, xz),
#  - .debs kept on disk (not installed) for archive fixtures and foreign rootfs,
#  - binfmt_misc mounted, test users qemutest (no sudo) and qemusudo (NOPASSWD),
#  - Node 24 in /opt for running the bundle (node.sh),
#  - a Debian 12 arm64 image for the arm64 kernel tests, built once per machine (arm64vm.sh).
# Idempotent: every step checks first, so a re-run is quick and prints nothing.
set -euo pipefail

CACHE=/var/cache/setup-qemu-binfmt-test
DEBS="$CACHE/debs"
# busybox-static of each, kept as .debs: foreign root file systems for the chroot tests, and amd64 and
# i386 programs for the arm64 kernel's tests (arm64vm.sh). dpkg must know those not native here.
BUSYBOX_ARCHS=(arm64 armhf ppc64el s390x mips64el amd64 i386)
FOREIGN=()
for a in "${BUSYBOX_ARCHS[@]}"; do
  [ "$a" = "$(dpkg --print-architecture)" ] || FOREIGN+=("$a")
done

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root prepare.sh

# apt-get update can exit non-zero when one index of a mirror is mid-sync;
# apt then keeps the old lists, which is good enough for our few packages.
APT_UPDATED=0
apt_update() {
  [ "$APT_UPDATED" = 1 ] && return 0
  apt-get update -qq >/dev/null 2>&1 || echo "prepare.sh: apt-get update reported errors (continuing)" >&2
  APT_UPDATED=1
}

# --- foreign dpkg architectures ---------------------------------------------
have_archs=" $(dpkg --print-foreign-architectures | tr '\n' ' ') "
need_update=0
for a in "${FOREIGN[@]}"; do
  if [[ "$have_archs" != *" $a "* ]]; then
    dpkg --add-architecture "$a"
    need_update=1
  fi
done
# A freshly added architecture has no package list yet.
for a in "${FOREIGN[@]}"; do
  compgen -G "/var/lib/apt/lists/*_dists_bookworm_main_binary-${a}_Packages*" >/dev/null || need_update=1
done
[ "$need_update" = 1 ] && apt_update

# --- installed packages -----------------------------------------------------
# No recommends: binfmt-support would register qemu-* entries in the kernel at
# install time, and the tests need a binfmt_misc they control.
# gcc and libc6-dev: tests build small static stand-in emulators.
PKGS=(qemu-user-static sudo zstd xz-utils gcc libc6-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install() { quiet apt-get install -y -qq --no-install-recommends "${missing[@]}"; }
  apt_install || { APT_UPDATED=0; apt_update; apt_install; }
fi

# --- downloaded (not installed) .debs ---------------------------------------
mkdir -p "$DEBS"
want=()
compgen -G "$DEBS/qemu-user-static_*_amd64.deb" >/dev/null || want+=(qemu-user-static:amd64)
# Its binfmt.d: the x86 entries an arm64 host registers, for the target table test; its
# emulators: the qemu-url of the arm64 kernel tests.
compgen -G "$DEBS/qemu-user-static_*_arm64.deb" >/dev/null || want+=(qemu-user-static:arm64)
for a in "${BUSYBOX_ARCHS[@]}"; do
  compgen -G "$DEBS/busybox-static_*_${a}.deb" >/dev/null || want+=("busybox-static:$a")
done
if [ "${#want[@]}" -gt 0 ]; then
  # Sandbox user root: _apt cannot write into a root-owned cache dir.
  apt_download() { (cd "$DEBS" && quiet apt-get download -qq -o APT::Sandbox::User=root "${want[@]}"); }
  apt_download || { APT_UPDATED=0; apt_update; apt_download; }
fi

# --- binfmt_misc ------------------------------------------------------------
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  [ -d /proc/sys/fs/binfmt_misc ] || modprobe binfmt_misc
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi

# --- test users -------------------------------------------------------------
id -u qemutest >/dev/null 2>&1 || useradd --create-home --shell /bin/bash qemutest
id -u qemusudo >/dev/null 2>&1 || useradd --create-home --shell /bin/bash qemusudo
SUDOERS=/etc/sudoers.d/qemusudo
LINE='qemusudo ALL=(ALL) NOPASSWD: ALL'
if [ "$(cat "$SUDOERS" 2>/dev/null)" != "$LINE" ]; then
  tmp=$(mktemp)
  echo "$LINE" >"$tmp"
  visudo -cqf "$tmp"
  install -m 0440 -o root -g root "$tmp" "$SUDOERS"
  rm -f "$tmp"
fi

# --- Node 24 for running the bundle in the integration tests ----------------
bash "$(dirname "$0")/node.sh" >/dev/null

# --- an arm64 kernel for arm64-kernel.test.ts --------------------------------
# A Debian 12 arm64 system image for qemu-system-aarch64, built once per machine
# outside the clone (~10 min on 2 cores). When it cannot be built, the tests go
# on without it: those tests are reported skipped with the reason in their names.
bash "$(dirname "$0")/arm64vm.sh" build || echo "prepare.sh: no arm64 image (above); the arm64 kernel tests will be skipped" >&2
