"""Session history in a real database (SQLAlchemy): SQLite by default, PostgreSQL for several instances."""
