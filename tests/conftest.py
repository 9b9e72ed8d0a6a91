"""Shared fixtures: the local ARM emulator and Azurite (each in its own plugin module)."""

pytest_plugins = ["tests.fixtures_emulator", "tests.fixtures_azurite"]
