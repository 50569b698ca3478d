"""The store's tables (SQLAlchemy Core); ``migrations/`` creates and evolves them."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

decisions = Table(
    "decisions",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("response_id", String(128), nullable=True, index=True),
    Column("created", Float, nullable=False, index=True),
    Column("route", String(200), nullable=False, index=True),
    Column("requested_model", String(200), nullable=True),
    Column("decision", String(32), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("artifact_id", String(200), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("key_name", String(200), nullable=True),
    Column("conversation", Text, nullable=True),  # JSON [{role, content}], keep_text only
    Column("answer", Text, nullable=True),  # keep_text only
    Column("answer_logprobs", Text, nullable=True),  # JSON [[token, logprob], ...], keep_text only
    # the model identity (config: a backend's model_identity) whose answer was served
    Column("answer_model", String(200), nullable=True),
    # how many attempts, and whether one retrieved context (the console's overview counts
    # escalations and retrievals from these, without joining the attempts)
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("retrieved", Boolean, nullable=False, server_default=text("false")),
)
# the overview's grouped counts over a window read this index alone (0005_console)
Index(
    "decisions_overview",
    decisions.c.created,
    decisions.c.route,
    decisions.c.decision,
    decisions.c.key_name,
    decisions.c.attempt_count,
    decisions.c.retrieved,
)

attempts = Table(
    "attempts",
    metadata,
    Column(
        "request_id",
        String(128),
        ForeignKey("decisions.request_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("tier", Integer, nullable=False),
    Column("model", String(200), nullable=False),
    Column("action", String(32), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("prediction", Integer, nullable=True),
    Column("q", Integer, nullable=True),
    Column("d", Float, nullable=True),
    Column("region_alpha", Float, nullable=True),
    Column("region_alpha_lower", Float, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("retrieved_context", Boolean, nullable=False),
)

# A shadow artifact's would-be decision on a request's served answer. No foreign key: a shadow
# row may reach the writer in a batch whose decision row was dropped (a full queue), and must
# not fail that batch.
shadow_decisions = Table(
    "shadow_decisions",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("artifact_id", String(200), primary_key=True),
    Column("created", Float, nullable=False, index=True),
    Column("decision", String(32), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("prediction", Integer, nullable=False),
    Column("q", Integer, nullable=False),
    Column("d", Float, nullable=False),
    Column("region_alpha", Float, nullable=False),
    Column("region_alpha_lower", Float, nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "request_id",
        String(128),
        ForeignKey("decisions.request_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("choice", Integer, nullable=False),
    Column("label", String(16), nullable=False),
    Column("note", Text, nullable=True),
    Column("created", Float, nullable=False),
    Column("current", Boolean, nullable=False),
    # who labelled: human | judge:<backend> | reference:<backend> (core.decisions.LabelSource)
    Column("source", String(200), nullable=False, server_default="human", index=True),
    Column("logprob", Float, nullable=True),  # the judge's logprob of its verdict word
)

# At most one current label per (request, choice, source); older labels stay as history. Which
# source's label counts is decided on reading (storage/labels.py: a person's wins).
Index(
    "feedback_current_label_by_source",
    feedback.c.request_id,
    feedback.c.choice,
    feedback.c.source,
    unique=True,
    sqlite_where=text("current"),
    postgresql_where=text("current"),
)

# The artifact registry (storage/registry.py): every artifact the autopilot built, with its
# lineage and lifecycle. ``id`` is the artifact's own id (``artifactId``), so a replica compares
# it with the artifact it serves.
artifacts = Table(
    "artifacts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("parent_id", String(200), nullable=True),
    Column("path", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("routes", Text, nullable=False),  # JSON list of route names
    Column("status", String(32), nullable=False, index=True),  # core.registry.ArtifactStatus
    Column("status_changed", Float, nullable=False),
    Column("figures", Text, nullable=False),  # JSON: the gate's figures
)

# Every step the autopilot took (and every rollback), oldest first by id.
autopilot_steps = Table(
    "autopilot_steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("step", String(32), nullable=False),
    Column("route", String(200), nullable=True),
    Column("artifact_id", String(200), nullable=True),
    Column("decision", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("figures", Text, nullable=False),  # JSON
)

# One row per lease name: who holds it until when (only one replica runs the autopilot).
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires", Float, nullable=False),
)
