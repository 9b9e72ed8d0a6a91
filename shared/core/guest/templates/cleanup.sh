find_devs || true
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
  # shellcheck disable=SC2086  # fields of ip's own output, re-used as its arguments
  ip rule del pref "$RULE_PREF" $rest && change "-rule $rest"
done < <(ip rule show pref "$RULE_PREF" table "$TABLE" from "$PRIMARY_IP" to "$SECONDARY_IP")
# Put the local-table rule back at pref 0 (add first, then remove the moved one).
if [ -z "$(ip rule show pref 0 table local)" ]; then
  ip rule add pref 0 lookup local || fail rule 8 "cannot restore the local rule at pref 0"
  change "+rule local pref 0"
fi
if [ -n "$(ip rule show pref "$LOCAL_PREF" table local)" ]; then
  ip rule del pref "$LOCAL_PREF" lookup local && change "-rule local pref $LOCAL_PREF"
fi
if [ -f "$ADDRESS_MARKER" ] && [ -n "$SEC_DEV" ]; then
  ip addr del "$SECONDARY_IP/$PREFIX_LEN" dev "$SEC_DEV" 2>/dev/null && change "-address $SECONDARY_IP/$PREFIX_LEN"
fi
if [ -L "$UNIT_LINK" ]; then rm -f "$UNIT_LINK" && change "-enable $UNIT_NAME"; fi
for f in "$UNIT_PATH" "$BODY_PATH" "$ADDRESS_MARKER"; do
  if [ -e "$f" ]; then rm -f "$f" && change "-file $f"; fi
done
rmdir "$STATE_DIR" 2>/dev/null
if [ -d /run/systemd/system ] && [ -n "$CHANGES" ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
RESULT=unchanged
[ -n "$CHANGES" ] && RESULT=cleaned
printf '{"result":"%s","os":"linux","format":%d,"changes":[%s]}\n' "$RESULT" "$FORMAT" "$CHANGES"
