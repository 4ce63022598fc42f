"""audit indexes for qa

Revision ID: f4d5e6a70012
Revises: e2c3d4f50011
Create Date: 2026-11-23 01:13:29.677389
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'f4d5e6a70012'
down_revision: str | None = 'e2c3d4f50011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_action_at', ['action', 'at'], unique=False)
        batch_op.create_index('ix_audit_entries_object_type_object_id', ['object_type', 'object_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_object_type_object_id')
        batch_op.drop_index('ix_audit_entries_action_at')

