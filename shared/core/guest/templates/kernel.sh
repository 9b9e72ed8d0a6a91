# The kernel side: ipproto/sport rule selectors need iproute2 4.17+ and kernel 4.17+
# (FRA_IP_PROTO, FRA_SPORT_RANGE); rp_filter is reported as the distro set it (the effective
# value per device is the larger of "all" and the device's own).
kernel_checks() {
  if ! ip rule help 2>&1 | grep -q ipproto; then
    fail iproute2_too_old 2 "ip rule lacks ipproto/sport selectors (iproute2 4.17+ needed)"
  fi
  local release major minor
  release=$(uname -r)
  major=${release%%.*}
  minor=${release#*.}
  minor=${minor%%[!0-9]*}
  if (( ${major:-0} < 4 || (${major:-0} == 4 && ${minor:-0} < 17) )); then
    fail kernel_too_old 2 "kernel $release lacks ipproto/sport rule selectors (4.17+ needed)"
  fi
}
sysctl_value() { cat "/proc/sys/net/ipv4/conf/$1/$2" 2>/dev/null || echo -1; }
kernel_facts() { # after find_devs: KERNEL_JSON for the result line
  local all pri sec
  all=$(sysctl_value all rp_filter)
  pri=$(sysctl_value "$PRI_DEV" rp_filter)
  sec=$(sysctl_value "$SEC_DEV" rp_filter)
  KERNEL_JSON=$(printf '{"release":"%s","rp_filter":{"all":%d,"primary":%d,"secondary":%d}}' \
    "$(clean "$(uname -r)")" "$all" "$pri" "$sec")
}
