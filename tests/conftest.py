"""Shared fixtures: the local ARM emulator and Azurite (each in its own plugin module)."""

pytest_plugins = ["tests.support.fixtures_emulator", "tests.support.fixtures_azurite",
                  "tests.support.remediation"]
