set -u
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PROBLEMS=''
problem() { PROBLEMS="${PROBLEMS:+$PROBLEMS,}\"${*//[^A-Za-z0-9 ._:\/+()>=-]/?}\""; }
SELECTORS=false
if ! command -v ip >/dev/null 2>&1; then
  problem "iproute2 (ip) is missing"
elif ip rule help 2>&1 | grep -q ipproto; then
  SELECTORS=true
else
  problem "ip rule has no ipproto/sport selectors (iproute2 >= 4.17)"
fi
KERNEL=$(uname -r)
KERNEL=${KERNEL//[^A-Za-z0-9._+-]/}
KMAJ=${KERNEL%%.*}
KREST=${KERNEL#*.}
KMIN=${KREST%%[!0-9]*}
if ! { [ "${KMAJ:-0}" -gt 4 ] || { [ "${KMAJ:-0}" -eq 4 ] && [ "${KMIN:-0}" -ge 17 ]; }; }; then
  problem "kernel $KERNEL has no ipproto/sport rule selectors (4.17 or later)"
fi
STACK=none
if systemctl is-active --quiet systemd-networkd 2>/dev/null; then
  STACK=networkd
elif systemctl is-active --quiet NetworkManager 2>/dev/null; then
  STACK=networkmanager
elif [ -f /etc/network/interfaces ]; then
  STACK=ifupdown
fi
MAC_FOUND=null
if [ -n "$PRIMARY_MAC" ]; then
  MAC_FOUND=false
  for dev in /sys/class/net/*; do
    [ "$(cat "$dev/address" 2>/dev/null)" = "$PRIMARY_MAC" ] && MAC_FOUND=true
  done
  [ "$MAC_FOUND" = true ] || problem "no interface has the MAC of the primary NIC ($PRIMARY_MAC)"
fi
OK=true
[ -z "$PROBLEMS" ] || OK=false
printf '{"probe":{"iproute2_selectors":%s,"kernel":"%s","stack":"%s","primary_mac_found":%s},"problems":[%s],"ok":%s}\n' \
  "$SELECTORS" "$KERNEL" "$STACK" "$MAC_FOUND" "$PROBLEMS" "$OK"
