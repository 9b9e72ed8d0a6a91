set -u
export LC_ALL=C
TMP=$(mktemp -d) || exit 2
trap 'rm -rf "$TMP"' EXIT
RESULTS=''
ALL_OK=1
# What the guest holds of the fix, next to what the connects measure (drift seen from Azure):
# per VIP its host route; the narrow rules, the local-table rules and the persistence.
RULES=$(ip rule show pref "$RULE_PREF" table "$TABLE" 2>/dev/null | grep -c .)
LOCAL_RULE=$(ip rule show table local 2>/dev/null | sed -n 's/^\([0-9]*\):.*/\1/p' | paste -sd, -)
MECHANISM=$(tr -dc 'a-z-' <"$MECHANISM_FILE" 2>/dev/null)
# One fresh TCP connection (new source port) per attempt, all in parallel; a server that
# answers a line first names the backend. Each attempt is a subshell, not a new process, and
# TIMEOUT is one deadline for all of them once they are started: on a busy guest, starting a
# process per attempt under its own timeout (as this did) used the timeout up before the
# connect began (a booted guest under emulation counted 0/20 to a listening VIP).
probe() { # $1 vip, $2 port
  local i ok=0 line name backends='' pids=() ticks=0
  for i in $(seq 1 "$COUNT"); do
    ( exec 3<>"/dev/tcp/$1/$2" || exit 1; echo C
      IFS= read -r -t 1 l <&3 && printf 'L %s\n' "$l"; exit 0 ) >"$TMP/$i" 2>/dev/null &
    pids+=("$!")
  done
  # Until every attempt ended or the deadline passed (a hairpin SYN is never answered).
  while [ "$ticks" -lt $((TIMEOUT * 5)) ] && kill -0 "${pids[@]}" 2>/dev/null; do
    sleep 0.2; ticks=$((ticks + 1))
  done
  kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null
  declare -A per=()
  for i in $(seq 1 "$COUNT"); do
    grep -qx C "$TMP/$i" || continue
    ok=$((ok + 1))
    line=$(grep -m 1 '^L ' "$TMP/$i")
    name=${line#L }; name=${name%% *}; name=${name//[^A-Za-z0-9._-]/}; name=${name:0:32}
    [ -n "$name" ] || continue
    [ -n "${per[$name]+x}" ] || [ "${#per[@]}" -lt 4 ] || name=other
    per[$name]=$(( ${per[$name]:-0} + 1 ))
  done
  for name in "${!per[@]}"; do backends="${backends:+$backends,}\"$name\":${per[$name]}"; done
  [ "$ok" -eq "$COUNT" ] || ALL_OK=0
  local route=false
  [ -n "$(ip route show table main exact "$1/32" 2>/dev/null)" ] && route=true
  RESULTS="${RESULTS:+$RESULTS,}{\"vip\":\"$1\",\"port\":$2,\"ok\":$ok,\"total\":$COUNT,\"route\":$route,\"backends\":{$backends}}"
  rm -f "$TMP"/*
}
@@PROBES@@
GUEST="\"rules\":$RULES,\"local_rule\":[$LOCAL_RULE],\"mechanism\":\"${MECHANISM:-none}\""
OUT="{\"verify\":[$RESULTS],\"ok\":$( [ "$ALL_OK" = 1 ] && echo true || echo false ),$GUEST}"
[ "${#OUT}" -lt 3500 ] || OUT="{\"verify\":[],\"ok\":$( [ "$ALL_OK" = 1 ] && echo true || echo false ),$GUEST,\"truncated\":true}"
printf '%s\n' "$OUT"
[ "$ALL_OK" = 1 ] || exit 1
