"""Azurite fixtures: start the storage emulator once per test session."""
