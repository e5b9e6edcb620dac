"""Store tests: one suite, run on SQLite and on PostgreSQL."""
