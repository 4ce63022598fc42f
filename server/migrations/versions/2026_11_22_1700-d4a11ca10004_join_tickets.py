"""join tickets

Revision ID: d4a11ca10004
Revises: c3c0de5e0003
Create Date: 2026-11-22 16:40:23.326435
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'd4a11ca10004'
down_revision: str | None = 'c3c0de5e0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('join_tickets',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.Enum('physician', 'patient', 'guest', name='callrole', native_enum=False, length=16), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_join_tickets_consultation_id_consultations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_join_tickets_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_join_tickets')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_join_tickets_token_sha256'))
    )
    with op.batch_alter_table('join_tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_join_tickets_consultation_id'), ['consultation_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('join_tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_join_tickets_consultation_id'))

    op.drop_table('join_tickets')
