"""The console's overview: each decision's number of attempts and whether one retrieved
context (kept on the decision, so that the overview counts escalations and retrievals without
joining the attempts), and one covering index for the overview's grouped counts over a window.

Revision ID: 0005_console
Revises: 0004_autopilot
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_console"
down_revision = "0004_autopilot"
branch_labels = None
depends_on = None

OVERVIEW_COLUMNS = ["created", "route", "decision", "key_name", "attempt_count", "retrieved"]


def upgrade() -> None:
    """Add decisions.attempt_count and decisions.retrieved (filled from the attempts) and the
    overview's covering index."""
    op.add_column(
        "decisions", sa.Column("attempt_count", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column(
        "decisions",
        sa.Column("retrieved", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE decisions SET attempt_count = (SELECT count(*) FROM attempts"
        " WHERE attempts.request_id = decisions.request_id),"
        " retrieved = EXISTS (SELECT 1 FROM attempts WHERE attempts.request_id ="
        " decisions.request_id AND attempts.retrieved_context)"
    )
    op.create_index("decisions_overview", "decisions", OVERVIEW_COLUMNS)


def downgrade() -> None:
    """Drop the index and the two columns."""
    op.drop_index("decisions_overview", table_name="decisions")
    # plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of `decisions` would drop
    # the table, and with it (ON DELETE CASCADE) every attempt and label
    op.drop_column("decisions", "retrieved")
    op.drop_column("decisions", "attempt_count")
