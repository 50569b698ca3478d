"""Alembic environment: runs on the connection ``DecisionStore`` passes in (online mode only)."""

from __future__ import annotations

from alembic import context

from sdm_router.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
