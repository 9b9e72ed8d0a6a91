#!/usr/bin/env bash
# Builds the real-OS rig's Debian 12 images (one per network stack) with debootstrap, from
# Debian packages only, into a cache outside the repository: the bootstrapped root is keyed by
# the checksum of its package list, the stack images by this file's checksum, so a second run
# with the same recipe bootstraps nothing (and a change below the package list only re-images).
#   tests/realos/image.sh [CACHE_DIR]      prints the directory holding the images
# Output: <dir>/vmlinuz, <dir>/initrd.img, <dir>/<stack>.img (raw ext4) for each stack below.
# Needs root, debootstrap and e2fsprogs (scripts/install-system-packages.sh --realos installs them).
set -euo pipefail
STACKS=(networkd networkmanager ifupdown)
PACKAGES=systemd,systemd-sysv,libpam-systemd,udev,dbus,kmod,iproute2,netbase,iputils-ping,procps,linux-image-amd64,netplan.io,network-manager,ifupdown,isc-dhcp-client,qemu-guest-agent,socat
SUITE=bookworm
MIRROR=${HAIRPIN_REALOS_MIRROR:-http://deb.debian.org/debian}
CACHE=${1:-${HAIRPIN_REALOS_CACHE:-/var/cache/hairpin-realos}}
KEY=$(sha256sum "$0" | cut -c1-16)
BASE="$CACHE/base-$(echo "$SUITE $PACKAGES" | sha256sum | cut -c1-16)"
OUT="$CACHE/$KEY"
[ -f "$OUT/ready" ] && { echo "$OUT"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "the real-OS images need root (debootstrap)" >&2; exit 2; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"; flock 9   # one build at a time; a waiting run then finds it ready
[ -f "$OUT/ready" ] && { echo "$OUT"; exit 0; }
WORK="$OUT.partial"
rm -rf "$WORK"; mkdir -p "$WORK"
log() { echo "realos-image: $*" >&2; }

if [ ! -f "$BASE/ready" ]; then
  log "debootstrap $SUITE ($PACKAGES) into $BASE (several minutes)"
  rm -rf "$BASE.partial"
  # debootstrap does not resolve virtual packages: libpam-systemd provides network-manager's
  # polkitd its logind. Downloaded .debs are kept beside the cache for a rebuild.
  mkdir -p "$CACHE/debs"
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$PACKAGES" "$SUITE" "$BASE.partial" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  rm -rf "$BASE.partial/var/cache/apt/archives/"*.deb
  mv "$BASE.partial" "$BASE"; touch "$BASE/ready"
fi
base="$WORK/base"
log "configuring a copy of $BASE"
cp -a "$BASE" "$base"; rm -f "$base/ready"
cp -L "$base/vmlinuz" "$WORK/vmlinuz"
cp -L "$base/initrd.img" "$WORK/initrd.img"

# What every stack shares: root on the virtio disk, an empty root password on the serial
# console (debugging only; there is no network login), the TCP listener the ILB balances to
# (answers "<host name> <peer ip>"; the rig names the host after its VM, as the namespace fabric's servers do), no timers that
# would run apt or man-db in the middle of a measurement.
echo "/dev/vda / ext4 rw,relatime 0 1" >"$base/etc/fstab"
chroot "$base" passwd -d root >/dev/null
# One listener per backend port (hairpin-listener@<port>): 1972 here; a guest model enables
# the others its VM's rules balance to (HealthShare's second mirror listens on 1973).
cat >"$base/etc/systemd/system/hairpin-listener@.service" <<'UNIT'
[Unit]
Description=Application listener the ILB balances to (port %i)
After=network.target
[Service]
ExecStart=/usr/bin/socat TCP-LISTEN:%i,fork,reuseaddr,backlog=128 SYSTEM:'echo "$(uname -n) $SOCAT_PEERADDR"'
Restart=always
[Install]
WantedBy=multi-user.target
UNIT
chroot "$base" systemctl enable hairpin-listener@1972.service >/dev/null 2>&1
for unit in apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
            systemd-timesyncd.service; do
  chroot "$base" systemctl mask "$unit" >/dev/null 2>&1 || true
done
# The stack's own services are enabled per image below.
for unit in systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service \
            NetworkManager.service NetworkManager-wait-online.service networking.service; do
  chroot "$base" systemctl disable "$unit" >/dev/null 2>&1 || true
done
rm -f "$base/etc/netplan/"*.yaml
printf 'auto lo\niface lo inet loopback\n' >"$base/etc/network/interfaces"
rm -rf "$base/var/cache/apt/archives/"*.deb "$base/var/lib/apt/lists/"*

stack_networkd() { # as Ubuntu on Azure: cloud-init's netplan, rendered by netplan for networkd
  cat >"$1/etc/netplan/50-cloud-init.yaml" <<'YAML'
network:
  version: 2
  ethernets:
    eth0:
      match: {name: eth0}
      dhcp4: true
      dhcp4-overrides: {route-metric: 100}
    eth1:
      match: {name: eth1}
      dhcp4: true
      dhcp4-overrides: {route-metric: 200}
YAML
  chmod 600 "$1/etc/netplan/50-cloud-init.yaml"
  chroot "$1" systemctl enable systemd-networkd.service >/dev/null 2>&1
}
stack_networkmanager() { # as RHEL on Azure: one keyfile profile per NIC, DHCP
  local dev
  for dev in eth0 eth1; do
    cat >"$1/etc/NetworkManager/system-connections/$dev.nmconnection" <<NM
[connection]
id=$dev
type=ethernet
interface-name=$dev
autoconnect=true
[ipv4]
method=auto
[ipv6]
method=ignore
NM
    chmod 600 "$1/etc/NetworkManager/system-connections/$dev.nmconnection"
  done
  chroot "$1" systemctl enable NetworkManager.service >/dev/null 2>&1
}
stack_ifupdown() { # as Debian's classic images: /etc/network/interfaces with dhclient
  printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n\nauto eth1\niface eth1 inet dhcp\n' \
    >"$1/etc/network/interfaces"
  chroot "$1" systemctl enable networking.service >/dev/null 2>&1
}

for stack in "${STACKS[@]}"; do
  log "image $stack"
  root="$WORK/root-$stack"
  rm -rf "$root"; cp -a "$base" "$root"
  echo "hairpin-$stack" >"$root/etc/hostname"
  "stack_$stack" "$root"
  rm -f "$root/etc/machine-id"; : >"$root/etc/machine-id"   # a fresh one each boot of a VM
  mkfs.ext4 -q -F -L root -d "$root" "$WORK/$stack.img" 2G >&2
  rm -rf "$root"
done
rm -rf "$base"
mv "$WORK" "$OUT"
touch "$OUT/ready"
for old in "$CACHE"/*/; do   # images of earlier recipes (the base and .debs stay)
  case "$(basename "$old")" in "$KEY"|base-*|debs) ;; *) rm -rf "$old" ;; esac
done
log "ready: $OUT"
echo "$OUT"
