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

# The machine's own Debian mirror: the URIs of the deb822 or one-line source that serves bookworm's main.
debian_uri() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 stanzas: URIs/Suites lines; the stanza whose suites include plain bookworm.
    uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ { if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1=="deb" && $0 ~ / bookworm / { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  return 1
}

# For a process left running (a daemon): closes every descriptor beyond 0-2 of the calling
# (sub)shell, so that a caller's flock(1) lock is not held for that process's life. Call it in a
# subshell that then starts the process.
close_inherited_fds() {
  local fd n
  for fd in /proc/$BASHPID/fd/*; do
    n=${fd##*/}
    if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
  done
}
