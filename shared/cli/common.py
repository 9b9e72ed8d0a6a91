"""CLI command families; each module's `register(subparsers)` adds its commands."""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""
