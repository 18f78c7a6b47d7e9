"""Criterion templates defined through the API, and their audit trail.

Revision ID: 0003_templates
Revises: 5d1f0b7a93e2
Create Date: 2026-12-01 12:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_templates"
down_revision: str | None = "5d1f0b7a93e2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "templates",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_templates")),
    )
    op.create_table(
        "template_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("template", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_events")),
    )
    with op.batch_alter_table("template_events", schema=None) as batch_op:
        batch_op.create_index("ix_template_events_template", ["template", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("template_events", schema=None) as batch_op:
        batch_op.drop_index("ix_template_events_template")
    op.drop_table("template_events")
    op.drop_table("templates")
