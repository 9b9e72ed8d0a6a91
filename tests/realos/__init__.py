"""The real-OS rig: Debian 12 guests booted under qemu on a namespace fabric (docs/real-os.md)."""
