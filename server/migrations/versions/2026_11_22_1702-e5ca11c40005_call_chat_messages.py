"""call chat messages

Revision ID: e5ca11c40005
Revises: d4a11ca10004
Create Date: 2026-11-22 17:02:57.992112
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'e5ca11c40005'
down_revision: str | None = 'd4a11ca10004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('call_chat_messages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('sender_user_id', sa.Uuid(), nullable=False),
    sa.Column('sender_role', sa.Enum('physician', 'patient', 'guest', name='callrole', native_enum=False, length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('sent_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_call_chat_messages_consultation_id_consultations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sender_user_id'], ['users.id'], name=op.f('fk_call_chat_messages_sender_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_chat_messages'))
    )
    with op.batch_alter_table('call_chat_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_chat_messages_consultation_id'), ['consultation_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('call_chat_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_chat_messages_consultation_id'))

    op.drop_table('call_chat_messages')
