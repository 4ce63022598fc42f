"""consultation protocols

Revision ID: a7e1c0de0007
Revises: f6e57a110006
Create Date: 2026-11-22 22:00:00.000000
"""
from collections.abc import Sequence


revision: str = 'a7e1c0de0007'
down_revision: str | None = 'f6e57a110006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
