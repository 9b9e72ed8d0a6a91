"""`hairpin`: the command line over the same services the Functions triggers call."""

from shared.cli.main import main

__all__ = ["main"]
