"""turns.heard_text: what the user heard of a spoken reply (null when it was not spoken).

Revision ID: 0002
Revises: 0001

reply_text stays the text generated and delivered; a reply cut short by barge-in is stored once, with both.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("turns", sa.Column("heard_text", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("turns", "heard_text")
