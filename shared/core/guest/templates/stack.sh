# Which network stack configures the primary NIC, read from the stack's own runtime state
# (so cloud-init's rendered files count as what they render to: netplan and cloud-init's
# networkd output -> networkd, its ENI output -> ifupdown, sysconfig/NM output -> NM).
dev_index() { cat "/sys/class/net/$1/ifindex" 2>/dev/null; }
networkd_file() { # $1 dev: the .network file systemd-networkd configured it from
  local f
  f=/run/systemd/netif/links/$(dev_index "$1")
  [ -r "$f" ] && sed -n 's/^NETWORK_FILE=//p' "$f"
}
nm_profile() { # $1 dev: UUID of the NetworkManager profile active on it
  command -v nmcli >/dev/null 2>&1 || return 0
  nmcli -g GENERAL.CON-UUID device show "$1" 2>/dev/null | head -n 1
}
ifupdown_up() { # $1 dev: brought up by ifupdown
  command -v ifup >/dev/null 2>&1 || return 1
  [ -s "/run/network/ifstate.$1" ] || grep -qs "^$1=" /run/network/ifstate
}
detect_stack() { # STACK: networkd | networkmanager | ifupdown | unit-watch (none recognised)
  STACK=unit-watch
  if [ -n "$(networkd_file "$PRI_DEV")" ]; then
    STACK=networkd
  elif [ -n "$(nm_profile "$PRI_DEV")" ]; then
    STACK=networkmanager
  elif ifupdown_up "$PRI_DEV"; then
    STACK=ifupdown
  fi
}
rule_lines() { # $1 = printf format with %s for: protocol number, port (one line per rule)
  local w proto
  for w in $WANT_RULES; do
    proto=${w#*|}; proto=${proto%%|*}
    # shellcheck disable=SC2059  # the format is ours, passed by the callers below
    printf "$1" "$proto" "${w##*/}"
  done
}
# systemd-networkd: a drop-in for the primary's own .network file (the return route, the narrow
# rules, the local rule at its new priority), and a .network of our own for the secondary NIC
# that sorts before netplan's and cloud-init's (the first matching file wins): DHCP for its
# address only, never a gateway, routes or DNS from it, and the VIP routes.
networkd_primary_conf() {
  printf '# azure-ilb-hairpin (format %s): owned by systemd-networkd, so a restart or\n' "$FORMAT"
  printf '# reconfigure restores these instead of removing them as foreign.\n'
  printf '[Route]\nDestination=%s/32\nGateway=%s\nGatewayOnLink=yes\nTable=%s\nProtocol=%s\n' \
    "$SECONDARY_IP" "$GATEWAY" "$TABLE" "$RT_PROTO"
  rule_lines "\n[RoutingPolicyRule]\nFrom=$PRIMARY_IP/32\nTo=$SECONDARY_IP/32\nIPProtocol=%s\nSourcePort=%s\nTable=$TABLE\nPriority=$RULE_PREF\n"
  if [ "$WANT_BROAD" = 1 ]; then
    printf '\n[RoutingPolicyRule]\nFrom=%s/32\nTo=%s/32\nTable=%s\nPriority=%s\n' \
      "$PRIMARY_IP" "$SECONDARY_IP" "$TABLE" "$RULE_PREF"
  fi
  printf '\n[RoutingPolicyRule]\nTable=local\nPriority=%s\n' "$LOCAL_PREF"
}
networkd_secondary_network() {
  local vip
  printf '# azure-ilb-hairpin (format %s): the managed secondary NIC; never a default route\n' "$FORMAT"
  printf '# or DNS source.\n[Match]\nMACAddress=%s\nName=%s\n\n' "$SECONDARY_MAC" "$SEC_DEV"
  printf '[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\nDNSDefaultRoute=no\n\n'
  printf '[DHCPv4]\nUseGateway=no\nUseRoutes=no\nUseDNS=no\nUseDomains=no\nUseNTP=no\nUseHostname=no\nRouteMetric=200\n'
  for vip in $WANT_VIPS; do
    printf '\n[Route]\nDestination=%s/32\nGateway=%s\nGatewayOnLink=yes\nPreferredSource=%s\nProtocol=%s\n' \
      "$vip" "$GATEWAY" "$SECONDARY_IP" "$RT_PROTO"
  done
}
# ifupdown: hooks it runs itself. if-up.d runs after every ifup (boot, `systemctl restart
# networking`, ifdown/ifup); dhclient's exit hook after every lease event; its enter hook drops
# the router and DNS options of the secondary's lease before dhclient-script applies them.
# shellcheck disable=SC2016  # $IFACE, $interface and $reason are the hooks' own variables
ifupdown_if_up() {
  printf '#!/bin/sh\n# azure-ilb-hairpin (format %s): re-apply after ifupdown brings a NIC up.\n' "$FORMAT"
  printf 'case "$IFACE" in\n  %s|%s) /bin/bash %s --hook >/dev/null 2>&1 || true ;;\nesac\nexit 0\n' \
    "$PRI_DEV" "$SEC_DEV" "$BODY_PATH"
}
# shellcheck disable=SC2016
dhclient_enter() {
  printf '# azure-ilb-hairpin (format %s): the secondary NIC is never a default route or DNS source.\n' "$FORMAT"
  printf 'if [ "$interface" = "%s" ]; then\n' "$SEC_DEV"
  printf '  unset new_routers new_rfc3442_classless_static_routes new_domain_name_servers new_domain_search new_domain_name\nfi\n'
}
# shellcheck disable=SC2016
dhclient_exit() {
  printf '# azure-ilb-hairpin (format %s): re-apply after a lease event of either NIC.\n' "$FORMAT"
  printf 'case "$reason" in\n  BOUND|RENEW|REBIND|REBOOT)\n'
  printf '    if [ "$interface" = "%s" ] || [ "$interface" = "%s" ]; then\n' "$PRI_DEV" "$SEC_DEV"
  printf '      /bin/bash %s --hook >/dev/null 2>&1 || true\n    fi ;;\nesac\n' "$BODY_PATH"
}
# NetworkManager: its dispatcher runs this after every activation and lease change, because the
# profile alone is not enough: NetworkManager adds a route with src= as the lease arrives, and
# when the address is not there yet the kernel refuses it (EINVAL) and NetworkManager does not
# try again (measured after a restart then a re-activation, NetworkManager 1.42).
# shellcheck disable=SC2016  # $1 and $2 are the dispatcher's arguments
nm_dispatcher() {
  printf '#!/bin/sh\n# azure-ilb-hairpin (format %s): re-apply after NetworkManager brings a NIC up.\n' "$FORMAT"
  printf 'case "$2" in up|dhcp4-change|reapply) ;; *) exit 0 ;; esac\n'
  printf 'case "$1" in %s|%s) ;; *) exit 0 ;; esac\n' "$PRI_DEV" "$SEC_DEV"
  printf '# wait while the installer or cleanup runs (they hold the lock)\n'
  printf 'if command -v flock >/dev/null 2>&1 && exec 9>%s; then flock -w 50 9; fi\n' "$LOCK_PATH"
  printf '[ -r %s ] && /bin/bash %s --hook >/dev/null 2>&1\nexit 0\n' "$BODY_PATH" "$BODY_PATH"
}
take_lock() { # the lock nm_dispatcher waits for; none where /run is not writable
  command -v flock >/dev/null 2>&1 || return 0
  { exec 8>"$LOCK_PATH"; } 2>/dev/null || return 0
  flock -w 120 8 || warn "$LOCK_PATH held for 120 s: going on"
}
# The files each stack's persistence consists of: "<generator> <path> <mode>" lines.
stack_files() {
  case "$STACK" in
    networkd)
      local pri
      pri=$(networkd_file "$PRI_DEV")
      echo "networkd_primary_conf $NETWORKD_DIR/${pri##*/}.d/$DROPIN_NAME 0644"
      echo "networkd_secondary_network $NETWORKD_DIR/$SECONDARY_NETWORK_NAME 0644" ;;
    ifupdown)
      echo "ifupdown_if_up $IFUP_HOOK 0755"
      echo "dhclient_enter $DHCLIENT_ENTER_HOOK 0644"
      echo "dhclient_exit $DHCLIENT_EXIT_HOOK 0644" ;;
    networkmanager)
      echo "nm_dispatcher $NM_DISPATCHER 0755" ;;
  esac
}
stack_reload() { # let the stack take its (new or removed) configuration
  case "$STACK" in
    networkd)
      networkctl reload >/dev/null 2>&1 || return 1
      if [ -x /lib/systemd/systemd-networkd-wait-online ]; then
        /lib/systemd/systemd-networkd-wait-online -i "$PRI_DEV" -i "$SEC_DEV" --timeout=30 >/dev/null 2>&1
      else
        sleep 3
      fi ;;
  esac
  return 0
}
# NetworkManager: the profiles themselves (ipv4.routes / ipv4.routing-rules, never-default and
# no DNS on the secondary), changed with nmcli and applied in place with `device reapply`; a
# byte copy of each profile's file is kept in $STATE_DIR so that cleanup puts exactly that back
# (nmcli rewrites the whole file, with uuid= and timestamp=, on any modify).
NM_KEYS="ipv4.routes ipv4.routing-rules ipv4.never-default ipv4.ignore-auto-dns ipv4.ignore-auto-routes"
nm_file() { # $1 uuid: the file the profile is stored in (none for in-memory profiles)
  nmcli -t -f UUID,FILENAME connection show | sed -n "s|^$1:||p" | head -n 1
}
nm_save() { # $1 uuid: the profile's file and original values (first time only)
  local f=$STATE_DIR/nm-$1 key path
  [ -e "$f" ] && return 0
  mkdir -p "$STATE_DIR" || return 1
  path=$(nm_file "$1")
  if [ -n "$path" ] && [ -f "$path" ]; then
    cp -p "$path" "$f.file" && printf '%s\n' "$path" >"$f.path" || return 1
    undo rm -f "$f.file" "$f.path"
  fi
  for key in $NM_KEYS; do printf '%s\t%s\n' "$key" "$(nmcli -g "$key" connection show "$1")"; done >"$f" || return 1
  undo rm -f "$f"
}
nm_restore() { # $1 uuid: put the saved file (else values) back (cleanup, or a failed apply)
  local f=$STATE_DIR/nm-$1 key value path args=()
  [ -r "$f" ] || return 0
  if [ -r "$f.file" ] && [ -r "$f.path" ]; then
    path=$(cat "$f.path")
    cp -p "$f.file" "$path" && nmcli connection load "$path" \
      && rm -f "$f" "$f.file" "$f.path" "$f.set"
    return
  fi
  while IFS=$'\t' read -r key value; do args+=("$key" "$value"); done <"$f"
  nmcli connection modify "$1" "${args[@]}" && rm -f "$f" "$f.set"
}
# `nmcli device reapply` of a profile with ipv6.method=ignore removes the kernel's IPv6
# link-local address (measured, NetworkManager 1.42), at times seconds after it returned; put
# back what it took, for 5 s.
nm_reapply() { # $1 dev
  local ll a
  ll=$(ip -6 -o addr show dev "$1" scope link 2>/dev/null | awk '{print $4}')
  nmcli device reapply "$1" >/dev/null 2>&1 || { warn "nmcli device reapply $1 failed"; return 0; }
  for _ in 1 2 3 4 5; do
    sleep 1
    for a in $ll; do
      ip -6 -o addr show dev "$1" scope link | grep -q " $a " || ip -6 addr add "$a" dev "$1" scope link
    done
  done
}
nm_apply() {
  local pri sec vip routes=() rules=()
  pri=$(nm_profile "$PRI_DEV")
  sec=$(nm_profile "$SEC_DEV")
  nm_save "$pri" || return 1
  undo nm_restore "$pri"
  for vip in $WANT_VIPS; do routes+=("$vip/32 $GATEWAY src=$SECONDARY_IP onlink=true"); done
  while read -r line; do rules+=("$line"); done < <(rule_lines "priority $RULE_PREF from $PRIMARY_IP/32 to $SECONDARY_IP/32 ipproto %s sport %s table $TABLE\n")
  [ "$WANT_BROAD" = 1 ] && rules+=("priority $RULE_PREF from $PRIMARY_IP/32 to $SECONDARY_IP/32 table $TABLE")
  rules+=("priority $LOCAL_PREF table 255")
  nm_profile_set "$pri" ipv4.routes "$SECONDARY_IP/32 $GATEWAY table=$TABLE onlink=true" || return 1
  nm_profile_set "$pri" ipv4.routing-rules "${rules[@]}" || return 1
  if [ -n "$sec" ] && [ "$sec" != "$pri" ]; then
    nm_save "$sec" || return 1
    undo nm_restore "$sec"
    nm_profile_set "$sec" ipv4.routes "${routes[@]}" || return 1
    nm_profile_set "$sec" ipv4.never-default yes || return 1
    nm_profile_set "$sec" ipv4.ignore-auto-dns yes || return 1
    nm_profile_set "$sec" ipv4.ignore-auto-routes yes || return 1
  else
    warn "the secondary NIC has no NetworkManager profile: only the unit restores its routes"
  fi
  [ -n "$NM_CHANGED" ] || return 0  # an unchanged profile is not applied again
  nm_reapply "$PRI_DEV"
  [ -n "$sec" ] && nm_reapply "$SEC_DEV"
  return 0
}
NM_CHANGED=''
# $1 uuid, $2 key, $3... values to be present. Any modify rewrites the profile's file (with a
# new timestamp=), so a key is left alone when it already holds them: a scalar compared as is,
# a list against what nmcli printed after our last modify ($STATE_DIR/nm-<uuid>.set), since
# NetworkManager prints routes and rules in its own normal form.
nm_profile_set() {
  local uuid=$1 key=$2 value have after memo=$STATE_DIR/nm-$1.set
  shift 2
  have=$(nmcli -g "$key" connection show "$uuid") || return 1
  case "$key" in
    ipv4.routes|ipv4.routing-rules)
      grep -Fxqs "$key	$*	$have" "$memo" && return 0
      for value in "$@"; do nmcli connection modify "$uuid" "+$key" "$value" || return 1; done ;;
    *) [ "$have" = "$1" ] && return 0
      nmcli connection modify "$uuid" "$key" "$1" || return 1 ;;
  esac
  after=$(nmcli -g "$key" connection show "$uuid") || return 1
  { grep -vs "^$key	" "$memo"; printf '%s\t%s\t%s\n' "$key" "$*" "$after"; } >"$memo.new" \
    && mv -f "$memo.new" "$memo" || return 1
  [ "$have" = "$after" ] && return 0
  NM_CHANGED=1
  change "+nm $uuid $key"
}
