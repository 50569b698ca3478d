"""Decisions, their attempts, and feedback labels with history.

Revision ID: 0001_decisions
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_decisions"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three tables and their indexes."""
    op.create_table(
        "decisions",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("response_id", sa.String(128), nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("requested_model", sa.String(200), nullable=True),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("artifact_id", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("key_name", sa.String(200), nullable=True),
        sa.Column("conversation", sa.Text, nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("answer_logprobs", sa.Text, nullable=True),
    )
    op.create_index("ix_decisions_response_id", "decisions", ["response_id"])
    op.create_index("ix_decisions_created", "decisions", ["created"])
    op.create_index("ix_decisions_route", "decisions", ["route"])
    op.create_table(
        "attempts",
        sa.Column(
            "request_id",
            sa.String(128),
            sa.ForeignKey("decisions.request_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("tier", sa.Integer, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("prediction", sa.Integer, nullable=True),
        sa.Column("q", sa.Integer, nullable=True),
        sa.Column("d", sa.Float, nullable=True),
        sa.Column("region_alpha", sa.Float, nullable=True),
        sa.Column("region_alpha_lower", sa.Float, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("retrieved_context", sa.Boolean, nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "request_id",
            sa.String(128),
            sa.ForeignKey("decisions.request_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("choice", sa.Integer, nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("current", sa.Boolean, nullable=False),
    )
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])
    op.create_index(
        "feedback_current_label",
        "feedback",
        ["request_id", "choice"],
        unique=True,
        sqlite_where=sa.text("current"),
        postgresql_where=sa.text("current"),
    )


def downgrade() -> None:
    """Drop everything."""
    op.drop_table("feedback")
    op.drop_table("attempts")
    op.drop_table("decisions")
