"""State stores: the interface (base), in-memory and SQLite implementations."""
