"""call invitations

Revision ID: f6e57a110006
Revises: e5ca11c40005
Create Date: 2026-11-22 19:06:19.193197
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'f6e57a110006'
down_revision: str | None = 'e5ca11c40005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('call_invitations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_by_user_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('redeemed_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('guest_name', sa.String(length=100), nullable=True),
    sa.Column('guest_relation', sa.Enum('interpreter', 'family', 'caregiver', 'other', name='guestrelation', native_enum=False, length=16), nullable=True),
    sa.Column('pass_sha256', sa.String(length=64), nullable=True),
    sa.Column('revoked_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_call_invitations_consultation_id_consultations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_call_invitations_created_by_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_invitations')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_call_invitations_token_sha256'))
    )
    with op.batch_alter_table('call_invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_invitations_consultation_id'), ['consultation_id'], unique=False)

    with op.batch_alter_table('call_chat_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sender_invitation_id', sa.Uuid(), nullable=True))
        batch_op.alter_column('sender_user_id',
               existing_type=sa.Uuid(),
               nullable=True)
        batch_op.create_foreign_key(batch_op.f('fk_call_chat_messages_sender_invitation_id_call_invitations'), 'call_invitations', ['sender_invitation_id'], ['id'])
        batch_op.create_check_constraint(batch_op.f('ck_call_chat_messages_one_sender'), '(sender_user_id IS NULL) <> (sender_invitation_id IS NULL)')

    with op.batch_alter_table('join_tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('invitation_id', sa.Uuid(), nullable=True))
        batch_op.alter_column('user_id',
               existing_type=sa.Uuid(),
               nullable=True)
        batch_op.create_foreign_key(batch_op.f('fk_join_tickets_invitation_id_call_invitations'), 'call_invitations', ['invitation_id'], ['id'], ondelete='CASCADE')
        batch_op.create_check_constraint(batch_op.f('ck_join_tickets_one_participant'), '(user_id IS NULL) <> (invitation_id IS NULL)')


def downgrade() -> None:
    # The older schema has no place for a guest: their tickets and chat messages go with the invitations.
    op.execute("DELETE FROM join_tickets WHERE user_id IS NULL")
    op.execute("DELETE FROM call_chat_messages WHERE sender_user_id IS NULL")
    with op.batch_alter_table('join_tickets', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_join_tickets_one_participant'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_join_tickets_invitation_id_call_invitations'), type_='foreignkey')
        batch_op.alter_column('user_id',
               existing_type=sa.Uuid(),
               nullable=False)
        batch_op.drop_column('invitation_id')

    with op.batch_alter_table('call_chat_messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_call_chat_messages_one_sender'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_call_chat_messages_sender_invitation_id_call_invitations'), type_='foreignkey')
        batch_op.alter_column('sender_user_id',
               existing_type=sa.Uuid(),
               nullable=False)
        batch_op.drop_column('sender_invitation_id')

    with op.batch_alter_table('call_invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_invitations_consultation_id'))

    op.drop_table('call_invitations')
