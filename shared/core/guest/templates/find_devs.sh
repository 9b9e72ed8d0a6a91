find_devs() {
  SEC_DEV=''
  local d mac n=0
  for d in /sys/class/net/*; do
    [ -r "$d/address" ] || continue
    mac=$(cat "$d/address" 2>/dev/null) || continue
    [ "${mac,,}" = "$SECONDARY_MAC" ] || continue
    # Accelerated networking: the VF shares the MAC and is enslaved to the synthetic NIC.
    [ -e "$d/master" ] && continue
    SEC_DEV=${d##*/}; n=$((n + 1))
  done
  [ "$n" -gt 1 ] && fail ambiguous_mac 3 "$n interfaces carry MAC $SECONDARY_MAC"
  PRI_DEV=''
  local line
  line=$(ip -o -4 addr show to "$PRIMARY_IP/32" 2>/dev/null | head -n 1)
  [ -n "$line" ] && { read -r _ PRI_DEV _ <<<"$line"; }
  [ -n "$SEC_DEV" ] && [ -n "$PRI_DEV" ]
}
