"""Adapters that read and change Azure through the SDK (the imperative shell)."""
