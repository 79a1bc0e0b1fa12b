#!/usr/bin/env bash
# One docker buildx build for several platforms on the given builder: each platform's RUN
# step records the architecture its programs see, and each must be that platform's.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

builder=$1
platforms=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/Dockerfile" <<DOCKERFILE
FROM $ALPINE_IMAGE AS probe
RUN { cat /etc/apk/arch; uname -m; } > /arch.txt
FROM scratch
COPY --from=probe /arch.txt /
DOCKERFILE
docker buildx build --builder "$builder" --platform "$platforms" --output "type=local,dest=$dir/out" "$dir"

IFS=, read -ra list <<<"$platforms"
for p in "${list[@]}"; do
  file="$dir/out/${p//\//_}/arch.txt"
  [ -f "$file" ] || fail "$p: the build produced no $file"
  got=$(head -n1 "$file")
  echo "$p: $(tr '\n' ' ' <"$file")"
  [ "$got" = "$(apk_arch "$p")" ] || fail "$p: the build ran $got programs, expected $(apk_arch "$p")"
done
