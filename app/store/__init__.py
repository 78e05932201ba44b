"""Persistence: feedback and invocation audit rows (SQLAlchemy 2.0; SQLite by default, PostgreSQL by URL)."""
