"""Label sources: who gave each label (a person, a judge, a reference comparison), the judge's
logprob of its verdict word, one current label per source; the model identity of an answer.

Labels written before this revision were all given through ``POST /v1/feedback``: they become
``human``.

Revision ID: 0003_label_sources
Revises: 0002_shadow_decisions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_label_sources"
down_revision = "0002_shadow_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add feedback.source and feedback.logprob, make "current" per source, add
    decisions.answer_model."""
    op.add_column(
        "feedback",
        sa.Column("source", sa.String(200), nullable=False, server_default="human"),
    )
    op.add_column("feedback", sa.Column("logprob", sa.Float, nullable=True))
    op.drop_index("feedback_current_label", table_name="feedback")
    op.create_index(
        "feedback_current_label_by_source",
        "feedback",
        ["request_id", "choice", "source"],
        unique=True,
        sqlite_where=sa.text("current"),
        postgresql_where=sa.text("current"),
    )
    op.create_index("ix_feedback_source", "feedback", ["source"])
    op.add_column("decisions", sa.Column("answer_model", sa.String(200), nullable=True))


def downgrade() -> None:
    """Back to one current label per answer: a person's label wins, else the newest."""
    connection = op.get_bind()
    connection.execute(
        sa.text(
            "UPDATE feedback SET current = false WHERE current AND id NOT IN ("
            " SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY request_id, choice"
            "  ORDER BY CASE WHEN source = 'human' THEN 0 ELSE 1 END, id DESC) AS rank"
            "  FROM feedback WHERE current) AS ranked WHERE rank = 1)"
        )
    )
    op.drop_index("ix_feedback_source", table_name="feedback")
    op.drop_index("feedback_current_label_by_source", table_name="feedback")
    op.create_index(
        "feedback_current_label",
        "feedback",
        ["request_id", "choice"],
        unique=True,
        sqlite_where=sa.text("current"),
        postgresql_where=sa.text("current"),
    )
    # plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of `decisions` would drop
    # the table, and with it (ON DELETE CASCADE) every attempt and label
    op.drop_column("feedback", "logprob")
    op.drop_column("feedback", "source")
    op.drop_column("decisions", "answer_model")
