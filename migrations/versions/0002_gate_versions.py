"""Gate versions: definitions stored by version, and the version on each check and sample.

Revision ID: 5d1f0b7a93e2
Revises: c5478c893a96
Create Date: 2026-12-01 09:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1f0b7a93e2"
down_revision: str | None = "c5478c893a96"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gate_versions",
        sa.Column("gate", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gate", "version", name=op.f("pk_gate_versions")),
    )
    with op.batch_alter_table("checks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gate_version", sa.String(length=64), nullable=True))
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gate_version", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_column("gate_version")
    with op.batch_alter_table("checks", schema=None) as batch_op:
        batch_op.drop_column("gate_version")
    op.drop_table("gate_versions")
