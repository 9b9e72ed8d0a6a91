"""Services: the one code path that CLI commands, Functions triggers and tests all go through."""
