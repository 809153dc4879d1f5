"""Baseline: the tables as `Base.metadata.create_all` made them before the schema was versioned.

Revision ID: 0001
Revises: (none)

A database made before versioning goes through this revision too (it has no alembic_version), so each table
is created only when it is missing: such a database already has them all, or, when an older release made it
(before the phone bridge), only sessions and turns, and create_all used to add the rest on start.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "secrets" not in present:
        op.create_table(
            "secrets",
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("value", sa.LargeBinary(), nullable=False),
        )
    if "sessions" not in present:
        op.create_table(
            "sessions",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_sessions_updated_at", "sessions", ["updated_at"])
    if "call_tokens" not in present:
        op.create_table(
            "call_tokens",
            sa.Column("token", sa.String(64), primary_key=True),
            sa.Column("session_id", sa.String(64), _session_key(), nullable=False),
            sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True),
        )
    if "callers" not in present:
        op.create_table(
            "callers",
            sa.Column("caller_hash", sa.String(64), primary_key=True),
            sa.Column("session_id", sa.String(64), _session_key(), nullable=False),
        )
    if "turns" not in present:
        op.create_table(
            "turns",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("session_id", sa.String(64), _session_key(), nullable=False),
            sa.Column("index", sa.Integer(), nullable=False),
            # Nullable: the model's column is deferred(), which leaves its nullability at the default.
            sa.Column("audio", sa.LargeBinary(), nullable=True),
            sa.Column("audio_seconds", sa.Double(), nullable=False),
            sa.Column("transcript", sa.Text(), nullable=True),
            sa.Column("reply_text", sa.Text(), nullable=True),
            sa.Column("interrupted", sa.Boolean(), nullable=False),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("speech_start", sa.DateTime(timezone=True), nullable=False),
            sa.Column("speech_end", sa.DateTime(timezone=True), nullable=False),
            sa.Column("turn_ended_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("first_delta_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("reply_done_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("context", sa.JSON(), nullable=True),
            sa.Column("timings", sa.JSON(), nullable=True),
            sa.UniqueConstraint("session_id", "index", name="uq_turn_index"),
        )
        op.create_index("ix_turns_session_id", "turns", ["session_id"])


def _session_key() -> sa.ForeignKey:
    return sa.ForeignKey("sessions.id", ondelete="CASCADE")


def downgrade() -> None:
    for table in ("turns", "callers", "call_tokens", "sessions", "secrets"):
        op.drop_table(table)
