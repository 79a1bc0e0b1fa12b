#!/usr/bin/env bash
# Makes this machine behave like an x86_64 host whose kernel runs no 32-bit x86
# programs (some paravirtualized VMs: "Exec format error"), to run the suite as
# such a host would: `bash .ci/no-ia32.sh on`, then `bash .ci/run`, then `off`.
#
# How: binfmt_misc entries (tried before the kernel's own ELF loader) take every
# i386/i486 program and hand it to an interpreter that is not a program, so
# exec fails with ENOEXEC, as on such a kernel. The entries are not qemu-*, so
# the action and the tests treat them as a foreign distro's entries; an entry
# the action registers later (qemu-i386) is newer and matched first, as it
# would be there. Root only; `status` shows whether it is on.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_root no-ia32.sh

DIR=/proc/sys/fs/binfmt_misc
NOT_A_PROGRAM=/var/lib/setup-qemu-binfmt-test/not-a-program
MASK='\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
magic() { printf '\\x7f\\x45\\x4c\\x46\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x%02x\\x00' "$1"; }

case "${1:-}" in
  on)
    [ -e "$DIR/register" ] || { echo "no-ia32.sh: binfmt_misc is not mounted (run .ci/prepare.sh)" >&2; exit 1; }
    mkdir -p "$(dirname "$NOT_A_PROGRAM")"
    printf 'not a program\n' >"$NOT_A_PROGRAM"
    chmod 0755 "$NOT_A_PROGRAM"
    # F: the kernel keeps the file open, so the entries work in chroots and containers too.
    [ -e "$DIR/no-ia32-i386" ] || printf ':no-ia32-i386:M::%s:%s:%s:F' "$(magic 3)" "$MASK" "$NOT_A_PROGRAM" >"$DIR/register"
    [ -e "$DIR/no-ia32-i486" ] || printf ':no-ia32-i486:M::%s:%s:%s:F' "$(magic 6)" "$MASK" "$NOT_A_PROGRAM" >"$DIR/register"
    ;;
  off)
    for e in no-ia32-i386 no-ia32-i486; do [ ! -e "$DIR/$e" ] || echo -1 >"$DIR/$e"; done
    ;;
  status)
    if [ -e "$DIR/no-ia32-i386" ]; then echo on; else echo off; fi
    ;;
  *)
    echo "usage: no-ia32.sh on|off|status" >&2
    exit 2
    ;;
esac
