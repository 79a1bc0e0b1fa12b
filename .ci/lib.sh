# Shared by the .ci scripts (sourced, not run).
export DEBIAN_FRONTEND=noninteractive

# The scripts install packages and start services: root only.
require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$1: must run as root" >&2
    exit 1
  fi
}

# Runs a command with its output kept aside; shown only when it fails.
quiet() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || cat "$log" >&2
  rm -f "$log"
  return "$rc"
}
