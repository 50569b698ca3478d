"""The autopilot: the artifact registry (lineage and status), the record of its steps, and the
lease that lets one replica run it.

Revision ID: 0004_autopilot
Revises: 0003_label_sources
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_autopilot"
down_revision = "0003_label_sources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create artifacts, autopilot_steps and leases."""
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("parent_id", sa.String(200), nullable=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("routes", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_changed", sa.Float, nullable=False),
        sa.Column("figures", sa.Text, nullable=False),
    )
    op.create_index("ix_artifacts_status", "artifacts", ["status"])
    op.create_table(
        "autopilot_steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("route", sa.String(200), nullable=True),
        sa.Column("artifact_id", sa.String(200), nullable=True),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("figures", sa.Text, nullable=False),
    )
    op.create_index("ix_autopilot_steps_at", "autopilot_steps", ["at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop them (the artifact files stay in their folder)."""
    op.drop_table("leases")
    op.drop_index("ix_autopilot_steps_at", table_name="autopilot_steps")
    op.drop_table("autopilot_steps")
    op.drop_index("ix_artifacts_status", table_name="artifacts")
    op.drop_table("artifacts")
