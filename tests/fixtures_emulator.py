"""Emulator fixtures (see emulator/README.md)."""
