"""Local Azure emulator: an HTTPS server speaking the ARM REST protocol (test and demo asset)."""
