#!/usr/bin/env bash
# Checks the action's outputs against what was asked for. Environment: PLATFORM (comma-separated
# platforms asked for), RUNNER_ARCH_NAME (runner.arch), PLATFORMS, PLATFORMS_JSON, EMULATORS,
# METHOD, BUILDER, NODES (the outputs); EXPECT_METHOD (default direct), EXPECT_BUILDER (none:
# no builder; default: one). Plain shell: a job container has no node or jq on PATH.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

echo "platforms=$PLATFORMS"
echo "platforms-json=$PLATFORMS_JSON"
echo "emulators=$EMULATORS method=$METHOD builder=$BUILDER"
echo "nodes=$NODES"

[[ "$PLATFORMS" =~ ^[a-z0-9/]+(,[a-z0-9/]+)*$ ]] || fail "platforms output is not a comma-separated list: '$PLATFORMS'"
# JSON.stringify of these names has nothing to escape, so the array's text is exact.
want_json="[\"${PLATFORMS//,/\",\"}\"]"
[ "$PLATFORMS_JSON" = "$want_json" ] || fail "platforms-json '$PLATFORMS_JSON' is not platforms as a JSON array ($want_json)"

[ "$METHOD" = "${EXPECT_METHOD:-direct}" ] || fail "method is '$METHOD', expected ${EXPECT_METHOD:-direct}"
if [ "${EXPECT_BUILDER:-}" = none ]; then
  [ -z "$BUILDER" ] || fail "builder '$BUILDER' set up with buildx: false"
else
  [ -n "$BUILDER" ] || fail "no builder output"
  [[ "$NODES" == '['*']' ]] || fail "nodes output is not a JSON array: '$NODES'"
fi

IFS=, read -ra asked <<<"$PLATFORM"
foreign=0 native=0
for p in "${asked[@]}"; do
  [[ ",$PLATFORMS," == *",$p,"* ]] || fail "$p was asked for but is not in the platforms output"
  [ -z "$BUILDER" ] || [[ "$NODES" == *"\"$p\""* ]] || fail "$p is not among the builder nodes' platforms"
  case "$RUNNER_ARCH_NAME:$p" in
    X64:linux/amd64 | X64:linux/386 | ARM64:linux/arm64) native=$((native + 1)) ;;
    ARM64:linux/arm/v7) ;; # native where the CPU runs AArch32, else emulated
    *) foreign=$((foreign + 1)) ;;
  esac
done
if [ "$foreign" -gt 0 ]; then
  [ -n "$EMULATORS" ] || fail "foreign platforms asked for, but no emulator was registered"
elif [ "$native" -eq "${#asked[@]}" ]; then
  [ -z "$EMULATORS" ] || fail "only native platforms asked for, yet emulators '$EMULATORS' were registered"
fi
echo "outputs ok"
