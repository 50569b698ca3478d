"""Shadow decisions: what a candidate verifier artifact would have decided.

Revision ID: 0002_shadow_decisions
Revises: 0001_decisions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_shadow_decisions"
down_revision = "0001_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the shadow_decisions table."""
    op.create_table(
        "shadow_decisions",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("artifact_id", sa.String(200), primary_key=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("prediction", sa.Integer, nullable=False),
        sa.Column("q", sa.Integer, nullable=False),
        sa.Column("d", sa.Float, nullable=False),
        sa.Column("region_alpha", sa.Float, nullable=False),
        sa.Column("region_alpha_lower", sa.Float, nullable=False),
    )
    op.create_index("ix_shadow_decisions_created", "shadow_decisions", ["created"])


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("shadow_decisions")
