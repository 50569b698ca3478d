"""The decision store: every request's decision and the feedback on it, in SQLite or PostgreSQL
(SQLAlchemy 2 Core, Alembic migrations), written off the request path in batches."""
