"""Azure ILB hairpin finder and fixer: the Python package with all the logic."""

__version__ = "0.1.0"
