BOOT=0
HOOK=0
UNDO_LOG=''
PENDING=''
MECHANISM=''
while [ "$#" -gt 0 ]; do
  case "$1" in
    --boot) BOOT=1 ;;
    --hook) HOOK=1 ;;  # re-apply from the network stack's hook or the watcher: same checks
    --watch) watch_events ;;
    --undo-log) UNDO_LOG=$2; shift ;;  # the installer undoes this run if persisting fails
    --mechanism) MECHANISM=$2; shift ;;
    *) PENDING="${PENDING:+$PENDING,}\"$(clean "$1")\"" ;;  # installer: what it will write
  esac
  shift
done
[ -n "$MECHANISM" ] || MECHANISM=$(cat "$MECHANISM_FILE" 2>/dev/null) || MECHANISM=unit-watch
kernel_checks
# At boot the secondary NIC may appear a little after this unit starts: wait for it.
tries=$(( BOOT ? 30 : (HOOK ? 5 : 1) ))
until find_devs; do
  tries=$((tries - 1))
  if [ "$tries" -le 0 ]; then
    [ -z "$SEC_DEV" ] && fail nic_not_found 3 "no interface with MAC $SECONDARY_MAC (secondary NIC not attached or not up)"
    fail primary_not_found 4 "no interface holds the primary address $PRIMARY_IP"
  fi
  sleep 2
done
kernel_facts
flags=$(cat "/sys/class/net/$SEC_DEV/flags")
if (( (flags & 1) == 0 )); then
  ip link set dev "$SEC_DEV" up || fail link_up 5 "cannot bring $SEC_DEV up"
  undo ip link set dev "$SEC_DEV" down
  change "+link up $SEC_DEV"
fi
if [ -z "$(ip -o -4 addr show dev "$SEC_DEV" to "$SECONDARY_IP/32")" ]; then
  # Normally DHCP configures it; add it without a subnet route so nothing else changes.
  ip addr add "$SECONDARY_IP/$PREFIX_LEN" dev "$SEC_DEV" noprefixroute \
    || fail address 5 "cannot add $SECONDARY_IP/$PREFIX_LEN to $SEC_DEV"
  undo ip addr del "$SECONDARY_IP/$PREFIX_LEN" dev "$SEC_DEV"
  if [ ! -e "$ADDRESS_MARKER" ]; then
    { mkdir -p "$STATE_DIR" && : >"$ADDRESS_MARKER"; } || fail persist 9 "cannot write $ADDRESS_MARKER"
    undo rm -f "$ADDRESS_MARKER"
  fi
  change "+address $SECONDARY_IP/$PREFIX_LEN $SEC_DEV"
fi
# Gateway reachability: the link must have carrier; when ping exists, ARP must resolve too.
for _ in 1 2 3; do
  [ "$(cat "/sys/class/net/$SEC_DEV/carrier" 2>/dev/null)" = 1 ] && break
  sleep 1
done
if [ "$(cat "/sys/class/net/$SEC_DEV/carrier" 2>/dev/null)" != 1 ]; then
  fail gateway_unreachable 6 "gateway $GATEWAY unreachable: $SEC_DEV has no link"
fi
if command -v ping >/dev/null 2>&1; then
  ping -c 1 -W 2 -I "$SEC_DEV" "$GATEWAY" >/dev/null 2>&1
  if ! ip neigh show "$GATEWAY" dev "$SEC_DEV" | grep -q lladdr; then
    fail gateway_unreachable 6 "gateway $GATEWAY unreachable via $SEC_DEV (no ARP reply)"
  fi
fi
ensure_vip_route() { # $1 = VIP
  [ -n "$(ip route show table main exact "$1/32" via "$GATEWAY" dev "$SEC_DEV")" ] && return 0
  ip route replace "$1/32" via "$GATEWAY" dev "$SEC_DEV" src "$SECONDARY_IP" onlink proto "$RT_PROTO" table main \
    || fail route 7 "cannot add route $1/32 via $GATEWAY dev $SEC_DEV"
  undo ip route del "$1/32" via "$GATEWAY" dev "$SEC_DEV" table main proto "$RT_PROTO"
  change "+route $1/32 $SEC_DEV"
}
ensure_return_route() {
  [ -n "$(ip route show table "$TABLE" exact "$SECONDARY_IP/32" via "$GATEWAY" dev "$PRI_DEV" 2>/dev/null)" ] && return 0
  ip route replace "$SECONDARY_IP/32" via "$GATEWAY" dev "$PRI_DEV" onlink proto "$RT_PROTO" table "$TABLE" \
    || fail route 7 "cannot add route $SECONDARY_IP/32 to table $TABLE"
  undo ip route del "$SECONDARY_IP/32" via "$GATEWAY" dev "$PRI_DEV" table "$TABLE" proto "$RT_PROTO"
  change "+route $SECONDARY_IP/32 table $TABLE $PRI_DEV"
}
our_rules() { ip rule show pref "$RULE_PREF" table "$TABLE" from "$PRIMARY_IP" to "$SECONDARY_IP"; }
# Selectors are numeric (ipproto 6): names need /etc/protocols (netbase), absent in minimal
# images. Read back, ip prints the name, the number or "ipproto-N", depending on that file.
ensure_rule() { # $1 = protocol name, $2 = protocol number, $3 = backend port (reply source port)
  our_rules | grep -Eq " ipproto ($1|$2|ipproto-$2) sport $3 lookup " && return 0
  ip rule add pref "$RULE_PREF" from "$PRIMARY_IP" to "$SECONDARY_IP" ipproto "$2" sport "$3" lookup "$TABLE" protocol "$RT_PROTO" \
    || fail rule 8 "cannot add rule for $1 sport $3"
  undo ip rule del pref "$RULE_PREF" from "$PRIMARY_IP" to "$SECONDARY_IP" ipproto "$2" sport "$3" lookup "$TABLE"
  change "+rule $1 sport $3"
}
ensure_broad_rule() {
  our_rules | grep -v ' ipproto ' | grep -q . && return 0
  ip rule add pref "$RULE_PREF" from "$PRIMARY_IP" to "$SECONDARY_IP" lookup "$TABLE" protocol "$RT_PROTO" \
    || fail rule 8 "cannot add the HA-ports rule"
  undo ip rule del pref "$RULE_PREF" from "$PRIMARY_IP" to "$SECONDARY_IP" lookup "$TABLE"
  change "+rule all ports"
}
# The local table must be consulted after the narrow rules, or they never match. The new rule
# is added before the kernel's pref-0 one goes, so there is never an instant without one; it
# is tagged "protocol kernel" because systemd-networkd never removes kernel rules
# (networkd-routing-policy-rule.c, "Do not touch rules managed by kernel") while it removes
# every other rule it did not configure on restart and reconfigure.
ensure_local_rule() {
  if [ -z "$(ip rule show pref "$LOCAL_PREF" table local)" ]; then
    ip rule add pref "$LOCAL_PREF" lookup local protocol kernel \
      || fail rule 8 "cannot add local rule at $LOCAL_PREF"
    undo ip rule del pref "$LOCAL_PREF" lookup local protocol kernel
    change "+rule local pref $LOCAL_PREF"
  fi
  local_guard || fail local_rule 8 "no local-table rule after adding pref $LOCAL_PREF"
  if [ -n "$(ip rule show pref 0 table local)" ]; then
    ip rule del pref 0 lookup local || fail rule 8 "cannot move the local rule"
    undo ip rule add pref 0 lookup local protocol kernel
    change "-rule local pref 0"
  fi
  local_guard || fail local_rule 8 "no local-table rule after removing pref 0"
}
# Converge: drop routes/rules of ours that the current values no longer want.
drop_stale() {
  local line dst rest
  while read -r dst _; do
    [ -n "$dst" ] || continue
    case " $WANT_VIPS " in *" ${dst%/32} "*) continue ;; esac
    ip route del "${dst%/32}/32" table main proto "$RT_PROTO" && change "-route $dst"
  done < <(ip route show table main proto "$RT_PROTO")
  while read -r line; do
    [ -n "$line" ] || continue
    read -r _ rest <<<"$line"  # drop "100:"
    rest=${rest% proto *}
    rest=${rest//ipproto ipproto-/ipproto }  # the number form ip accepts back
    case "$rest" in *" sport "*) ;; *) [ "$WANT_BROAD" = 1 ] && continue ;; esac
    local keep=0 w
    for w in $WANT_RULES; do
      [[ "$rest" =~ \ ipproto\ (${w%%/*})\ sport\ ${w##*/}\ lookup\  ]] && keep=1
    done
    [ "$keep" = 1 ] && continue
    # shellcheck disable=SC2086  # fields of ip's own output, re-used as its arguments
    ip rule del pref "$RULE_PREF" $rest && change "-rule $rest"
  done < <(our_rules)
}
@@STEPS@@
ensure_local_rule
drop_stale
if [ -n "$UNDO_LOG" ]; then
  printf '%s\n' ${UNDO[@]+"${UNDO[@]}"} >"$UNDO_LOG"
fi
UNDO=()
[ -n "$PENDING" ] && CHANGES="$PENDING${CHANGES:+,$CHANGES}"
RESULT=unchanged
[ -n "$CHANGES" ] && RESULT=applied
printf '{"result":"%s","os":"linux","format":%d,"secondary_dev":"%s","primary_dev":"%s","boot":%d,"mechanism":"%s","local_rule":%s,"kernel":%s,"changes":[%s],"warnings":[%s]}\n' \
  "$RESULT" "$FORMAT" "$(clean "$SEC_DEV")" "$(clean "$PRI_DEV")" "$BOOT" "$(clean "$MECHANISM")" \
  "$(local_prefs)" "$KERNEL_JSON" "$CHANGES" "$WARNINGS"
