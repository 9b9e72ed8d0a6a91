"""CLI command families; each module's `register(subparsers)` adds its commands."""
