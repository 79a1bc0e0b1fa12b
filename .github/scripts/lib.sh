# Shared by the CI scripts: what a platform's alpine image calls its architecture.
# shellcheck shell=bash

# shellcheck disable=SC2034 # used by the scripts that source this file
ALPINE_IMAGE=alpine:3.21

fail() {
  echo "::error::$*"
  exit 1
}

# /etc/apk/arch of the alpine image for a Docker platform.
apk_arch() {
  case "$1" in
    linux/amd64) echo x86_64 ;;
    linux/386) echo x86 ;;
    linux/arm64 | linux/arm64/v8) echo aarch64 ;;
    linux/arm/v7) echo armv7 ;;
    linux/arm/v6) echo armhf ;;
    linux/riscv64) echo riscv64 ;;
    linux/ppc64le) echo ppc64le ;;
    linux/s390x) echo s390x ;;
    *) fail "no alpine architecture known for $1" ;;
  esac
}
