#!/usr/bin/env bash
# Installs the Debian packages the namespace fabric (iproute2, nftables, util-linux), the HTML
# report check (chromium) and the deploy script's lint (shellcheck) need. Only as root;
# otherwise the tests that need them skip and say so. With --realos, also what the real-OS
# rig needs (make test-os): qemu, debootstrap, dnsmasq, e2fsprogs.
set -euo pipefail
need=()
if [ "${1:-}" = --realos ]; then
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  command -v qemu-img >/dev/null || need+=(qemu-utils)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
  command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
fi
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v chromium >/dev/null || need+=(chromium)
command -v unshare >/dev/null || need+=(util-linux)
command -v shellcheck >/dev/null || need+=(shellcheck)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "not root: skipping apt-get install ${need[*]} (namespace, browser and shellcheck tests will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
