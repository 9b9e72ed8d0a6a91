take_lock
find_devs || true
STACK=$(cat "$MECHANISM_FILE" 2>/dev/null) || STACK=unit-watch
remove_file() { if [ -e "$1" ] || [ -L "$1" ]; then rm -f "$1" && change "-file $1"; fi; }
# The watcher and the hooks go first, so that nothing re-applies while the rest goes.
if [ -d /run/systemd/system ] && [ -e "$WATCH_UNIT_PATH" ]; then
  systemctl stop "$WATCH_UNIT_NAME" >/dev/null 2>&1 || true
fi
remove_file "$NM_DISPATCHER"
# The stack's own configuration next, so that the stack lets go of its copies; then the live
# state it may have left.
for f in "$STATE_DIR"/nm-*; do
  [ -e "$f" ] || continue
  uuid=${f##*/nm-}
  case "$uuid" in *.*) continue ;; esac  # the saved file, its path, the memo: nm_restore's
  nm_restore "$uuid" && change "-nm $uuid"
done
if [ "$STACK" = networkmanager ] && [ -n "$CHANGES" ]; then
  for d in "$PRI_DEV" "$SEC_DEV"; do
    [ -n "$d" ] && nm_reapply "$d"
  done
fi
if [ -r "$MANIFEST" ]; then
  while IFS= read -r f; do
    case "$f" in */|'') ;; *) remove_file "$f" ;; esac
  done <"$MANIFEST"
  # Directories we created, deepest first, if nothing else was put in them since.
  while IFS= read -r d; do
    rmdir "${d%/}" 2>/dev/null
  done < <(grep '/$' "$MANIFEST" | sort -r)
fi
for f in "$UNIT_LINK" "$UNIT_PATH" "$BODY_PATH" "$MANIFEST" "$MECHANISM_FILE"; do  # format 1
  remove_file "$f"
done
if [ -d /run/systemd/system ] && [ -n "$CHANGES" ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
[ -n "$PRI_DEV" ] && [ -n "$SEC_DEV" ] && { stack_reload || warn "the $STACK reload failed"; }
# Routes carry our proto tag; rules sit at our pref and table: remove exactly those.
while read -r dst _; do
  [ -n "$dst" ] || continue
  ip route del "${dst%/32}/32" table main proto "$RT_PROTO" && change "-route $dst"
done < <(ip route show table main proto "$RT_PROTO")
while read -r dst _; do
  [ -n "$dst" ] || continue
  ip route del "${dst%/32}/32" table "$TABLE" proto "$RT_PROTO" && change "-route $dst table $TABLE"
done < <(ip route show table "$TABLE" proto "$RT_PROTO" 2>/dev/null)
while read -r line; do
  [ -n "$line" ] || continue
  read -r _ rest <<<"$line"  # drop "100:"
  rest=${rest% proto *}
  rest=${rest//ipproto ipproto-/ipproto }  # the number form ip accepts back
  # shellcheck disable=SC2086  # fields of ip's own output, re-used as its arguments
  ip rule del pref "$RULE_PREF" $rest && change "-rule $rest"
  local_guard
done < <(ip rule show pref "$RULE_PREF" table "$TABLE" from "$PRIMARY_IP" to "$SECONDARY_IP")
# Put the kernel's local-table rule back at pref 0 first, then remove the moved one(s).
if [ -z "$(ip rule show pref 0 table local)" ]; then
  ip rule add pref 0 lookup local protocol kernel || fail rule 8 "cannot restore the local rule at pref 0"
  change "+rule local pref 0"
fi
while [ -n "$(ip rule show pref "$LOCAL_PREF" table local)" ]; do
  ip rule del pref "$LOCAL_PREF" lookup local || break
  change "-rule local pref $LOCAL_PREF"
  local_guard
done
# The address we added carries noprefixroute and no lifetime; once a DHCP client has bound it
# again (after a boot that ran us first, then an ifdown/ifup: measured with ifupdown) it is
# the stack's, with its subnet route, and stays.
if [ -f "$ADDRESS_MARKER" ] && [ -n "$SEC_DEV" ]; then
  addr=$(ip -o -4 addr show dev "$SEC_DEV" to "$SECONDARY_IP/32")
  if [[ "$addr" == *noprefixroute* && "$addr" != *dynamic* ]]; then
    ip addr del "$SECONDARY_IP/$PREFIX_LEN" dev "$SEC_DEV" 2>/dev/null && change "-address $SECONDARY_IP/$PREFIX_LEN"
  fi
fi
remove_file "$ADDRESS_MARKER"
rmdir "$STATE_DIR" 2>/dev/null
RESULT=unchanged
[ -n "$CHANGES" ] && RESULT=cleaned
printf '{"result":"%s","os":"linux","format":%d,"mechanism":"%s","local_rule":%s,"changes":[%s],"warnings":[%s]}\n' \
  "$RESULT" "$FORMAT" "$(clean "$STACK")" "$(local_prefs)" "$CHANGES" "$WARNINGS"
