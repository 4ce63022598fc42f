"""create accounts, people, availability and audit

Revision ID: a1f0c0de0001
Revises: 
Create Date: 2026-11-22 13:25:06.271868
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'a1f0c0de0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_entries',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_user_id', sa.Uuid(), nullable=True),
    sa.Column('actor_role', sa.String(length=16), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=True),
    sa.Column('subject_patient_id', sa.Uuid(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('ip_hash', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_subject_patient_id_seq', ['subject_patient_id', 'seq'], unique=False)

    audit_head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    # The chain starts from a fixed genesis; appends lock and advance this one row.
    op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    op.create_table('users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.Enum('patient', 'physician', 'qa_expert', 'admin', name='role', native_enum=False, length=16), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('locale', sa.String(length=5), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('totp_secret_encrypted', sa.LargeBinary(), nullable=True),
    sa.Column('totp_enabled_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('totp_last_step', sa.Integer(), nullable=True),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_table('auth_sessions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('amr', sa.String(length=32), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_auth_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_sessions'))
    )
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('patients',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_patients_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('user_id', name=op.f('uq_patients_user_id'))
    )
    op.create_table('physicians',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('specialty', sa.String(length=100), nullable=False),
    sa.Column('licence_number', sa.String(length=50), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_physicians_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_physicians')),
    sa.UniqueConstraint('user_id', name=op.f('uq_physicians_user_id'))
    )
    op.create_table('qa_experts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('specialty', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_qa_experts_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_experts')),
    sa.UniqueConstraint('user_id', name=op.f('uq_qa_experts_user_id'))
    )
    op.create_table('refresh_tokens',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('session_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('issued_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('spent_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['auth_sessions.id'], name=op.f('fk_refresh_tokens_session_id_auth_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_tokens_token_hash'))
    )
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_refresh_tokens_session_id', ['session_id'], unique=False)

    op.create_table('weekly_availability',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('physician_id', sa.Uuid(), nullable=False),
    sa.Column('weekday', sa.SmallInteger(), nullable=False),
    sa.Column('start_time', sa.Time(), nullable=False),
    sa.Column('end_time', sa.Time(), nullable=False),
    sa.Column('slot_minutes', sa.SmallInteger(), nullable=False),
    sa.CheckConstraint('slot_minutes BETWEEN 5 AND 120', name=op.f('ck_weekly_availability_slot_minutes_range')),
    sa.CheckConstraint('start_time < end_time', name=op.f('ck_weekly_availability_start_before_end')),
    sa.CheckConstraint('weekday BETWEEN 0 AND 6', name=op.f('ck_weekly_availability_weekday_range')),
    sa.ForeignKeyConstraint(['physician_id'], ['physicians.id'], name=op.f('fk_weekly_availability_physician_id_physicians'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_weekly_availability'))
    )
    with op.batch_alter_table('weekly_availability', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_weekly_availability_physician_id'), ['physician_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('weekly_availability', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_weekly_availability_physician_id'))

    op.drop_table('weekly_availability')
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_refresh_tokens_session_id')

    op.drop_table('refresh_tokens')
    op.drop_table('qa_experts')
    op.drop_table('physicians')
    op.drop_table('patients')
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_sessions_user_id'))

    op.drop_table('auth_sessions')
    op.drop_table('users')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_subject_patient_id_seq')

    op.drop_table('audit_entries')
