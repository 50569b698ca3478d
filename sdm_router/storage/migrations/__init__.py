"""Alembic migrations of the decision store (applied at start by ``DecisionStore.start``)."""
