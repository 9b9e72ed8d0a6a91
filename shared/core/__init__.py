"""The pure core: immutable topology -> findings -> plan -> guard decision.

Nothing below this package imports an Azure SDK, an adapter (`shared.azure`, `shared.storage`),
a service or an I/O module; `tests/unit/test_layering.py` keeps it so.
"""
