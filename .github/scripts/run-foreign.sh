#!/usr/bin/env bash
# Runs the alpine image of one platform: its own busybox prints its architecture.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

platform=$1
want=$(apk_arch "$platform")
docker pull --quiet --platform "$platform" "$ALPINE_IMAGE" >/dev/null
out=$(docker run --rm --platform "$platform" "$ALPINE_IMAGE" sh -c 'cat /etc/apk/arch; uname -m')
echo "$platform: $(echo "$out" | tr '\n' ' ')"
[ "$(echo "$out" | head -n1)" = "$want" ] || fail "$platform: the image says it is $(echo "$out" | head -n1), expected $want"
