set -u
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CHANGES=''
WARNINGS=''
UNDO=()  # inverse of every change this run made, in order; undone last-first on failure
# Only our own fixed tokens and kernel interface names reach the JSON; strip anything else.
clean() { local s="$*"; printf '%s' "${s//[^A-Za-z0-9 ._:\/+@(),-]/?}"; }
change() { CHANGES="${CHANGES:+$CHANGES,}\"$(clean "$*")\""; }
warn() { WARNINGS="${WARNINGS:+$WARNINGS,}\"$(clean "$*")\""; }
undo() { local cmd; printf -v cmd '%q ' "$@"; UNDO+=("$cmd"); }
# The prefs of the rules that look up the local table, as a JSON list ("[1000]").
local_prefs() {
  local prefs
  prefs=$(ip rule show table local 2>/dev/null | sed -n 's/^\([0-9]*\):.*/\1/p' | paste -sd, -)
  printf '[%s]' "$prefs"
}
# The guard: the kernel must never be without a rule that looks up the local table (without
# one, nothing addressed to the VM itself, loopback included, is delivered). Checked after
# every rule change; restores the kernel's own pref-0 rule when none is left.
local_guard() {
  [ -n "$(ip rule show table local 2>/dev/null)" ] && return 0
  ip rule add pref 0 lookup local protocol kernel 2>/dev/null || ip rule add pref 0 lookup local
  echo "hairpin: error: no local-table rule was left; restored it at pref 0" >&2
  return 1
}
rollback() { # undo this run's changes, newest first; the guard runs after each step
  local i
  for ((i = ${#UNDO[@]} - 1; i >= 0; i--)); do
    eval "${UNDO[i]}" >/dev/null 2>&1
    local_guard
  done
  UNDO=()
}
fail() { # $1 code, $2 exit status, $3 message: all or nothing, so undo first
  echo "hairpin: error: $3" >&2
  local undone=${#UNDO[@]}
  rollback
  local_guard
  printf '{"result":"error","error":"%s","message":"%s","changes":[%s],"rolled_back":%d,"local_rule":%s}\n' \
    "$1" "$(clean "$3")" "$CHANGES" "$undone" "$(local_prefs)"
  exit "$2"
}
trap 'fail interrupted 10 "interrupted by a signal"' TERM INT HUP
