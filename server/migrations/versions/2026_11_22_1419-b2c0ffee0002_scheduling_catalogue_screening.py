"""scheduling, catalogue, screening, notifications

Revision ID: b2c0ffee0002
Revises: a1f0c0de0001
Create Date: 2026-11-22 14:19:24.824691
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'b2c0ffee0002'
down_revision: str | None = 'a1f0c0de0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('conditions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('icd10', sa.String(length=16), nullable=True),
    sa.Column('name_ru', sa.String(length=200), nullable=False),
    sa.Column('name_en', sa.String(length=200), nullable=False),
    sa.Column('audience', sa.String(length=8), nullable=False),
    sa.Column('allows_primary', sa.Boolean(), nullable=False),
    sa.Column('allows_repeat', sa.Boolean(), nullable=False),
    sa.Column('questionnaire_code', sa.String(length=64), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_user_id', sa.Uuid(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conditions')),
    sa.UniqueConstraint('code', 'version', name=op.f('uq_conditions_code_version'))
    )
    with op.batch_alter_table('conditions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conditions_code'), ['code'], unique=False)

    op.create_table('questionnaires',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_questionnaires')),
    sa.UniqueConstraint('code', 'version', name=op.f('uq_questionnaires_code_version'))
    )
    with op.batch_alter_table('questionnaires', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_questionnaires_code'), ['code'], unique=False)

    op.create_table('availability_exceptions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('physician_id', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('kind', sa.Enum('day_off', 'extra_hours', name='exceptionkind', native_enum=False, length=16), nullable=False),
    sa.Column('start_time', sa.Time(), nullable=True),
    sa.Column('end_time', sa.Time(), nullable=True),
    sa.Column('slot_minutes', sa.SmallInteger(), nullable=False),
    sa.CheckConstraint("kind = 'day_off' OR (start_time IS NOT NULL AND end_time IS NOT NULL AND start_time < end_time)", name=op.f('ck_availability_exceptions_extra_hours_have_a_range')),
    sa.ForeignKeyConstraint(['physician_id'], ['physicians.id'], name=op.f('fk_availability_exceptions_physician_id_physicians'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_availability_exceptions'))
    )
    with op.batch_alter_table('availability_exceptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_availability_exceptions_physician_id'), ['physician_id'], unique=False)

    op.create_table('consultations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('physician_id', sa.Uuid(), nullable=False),
    sa.Column('condition_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Enum('primary', 'repeat', name='consultationkind', native_enum=False, length=16), nullable=False),
    sa.Column('status', sa.Enum('scheduled', 'waiting', 'in_call', 'completed', 'documented', 'cancelled', 'no_show', 'refused', 'interrupted', name='consultationstatus', native_enum=False, length=16), nullable=False),
    sa.Column('starts_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('complaint', sa.Text(), nullable=False),
    sa.Column('questionnaire_id', sa.Uuid(), nullable=False),
    sa.Column('screening_answers', sa.JSON(), nullable=False),
    sa.Column('booked_by_user_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('checked_in_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('checkin_questionnaire_id', sa.Uuid(), nullable=True),
    sa.Column('checkin_answers', sa.JSON(), nullable=True),
    sa.Column('device_check', sa.JSON(), nullable=True),
    sa.Column('admitted_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by_user_id', sa.Uuid(), nullable=True),
    sa.Column('needs_reschedule', sa.Boolean(), nullable=False),
    sa.CheckConstraint('starts_at < ends_at', name=op.f('ck_consultations_starts_before_ends')),
    sa.ForeignKeyConstraint(['checkin_questionnaire_id'], ['questionnaires.id'], name=op.f('fk_consultations_checkin_questionnaire_id_questionnaires'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['condition_id'], ['conditions.id'], name=op.f('fk_consultations_condition_id_conditions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_consultations_patient_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['physician_id'], ['physicians.id'], name=op.f('fk_consultations_physician_id_physicians'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['questionnaire_id'], ['questionnaires.id'], name=op.f('fk_consultations_questionnaire_id_questionnaires'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consultations'))
    )
    with op.batch_alter_table('consultations', schema=None) as batch_op:
        batch_op.create_index('ix_consultations_patient_id_starts_at', ['patient_id', 'starts_at'], unique=False)
        batch_op.create_index('ix_consultations_status_starts_at', ['status', 'starts_at'], unique=False)
        batch_op.create_index('uq_consultations_physician_id_starts_at', ['physician_id', 'starts_at'], unique=True, sqlite_where=sa.text("status NOT IN ('cancelled', 'refused')"), postgresql_where=sa.text("status NOT IN ('cancelled', 'refused')"))

    op.create_table('patient_diagnoses',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('condition_code', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Enum('in_person', 'consultation', name='diagnosissource', native_enum=False, length=16), nullable=False),
    sa.Column('diagnosed_on', sa.Date(), nullable=False),
    sa.Column('recorded_by_user_id', sa.Uuid(), nullable=False),
    sa.Column('recorded_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_diagnoses_patient_id_patients'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_diagnoses'))
    )
    with op.batch_alter_table('patient_diagnoses', schema=None) as batch_op:
        batch_op.create_index('ix_patient_diagnoses_patient_id_condition_code', ['patient_id', 'condition_code'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=160), nullable=False),
    sa.Column('status', sa.Enum('pending', 'sending', 'sent', 'failed', name='notificationstatus', native_enum=False, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_notifications_consultation_id_consultations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_notifications_idempotency_key'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_consultation_id'), ['consultation_id'], unique=False)
        batch_op.create_index('ix_notifications_status_created_at', ['status', 'created_at'], unique=False)

    op.create_table('screening_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('physician_id', sa.Uuid(), nullable=True),
    sa.Column('consultation_id', sa.Uuid(), nullable=True),
    sa.Column('questionnaire_id', sa.Uuid(), nullable=False),
    sa.Column('stage', sa.Enum('booking', 'checkin', name='screeningstage', native_enum=False, length=16), nullable=False),
    sa.Column('rule_ids', sa.JSON(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_screening_events_consultation_id_consultations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_screening_events_patient_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['physician_id'], ['physicians.id'], name=op.f('fk_screening_events_physician_id_physicians'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['questionnaire_id'], ['questionnaires.id'], name=op.f('fk_screening_events_questionnaire_id_questionnaires'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_screening_events'))
    )
    with op.batch_alter_table('screening_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_screening_events_patient_id'), ['patient_id'], unique=False)

    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify_email', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('notify_sms', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_column('notify_sms')
        batch_op.drop_column('notify_email')

    with op.batch_alter_table('screening_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_screening_events_patient_id'))

    op.drop_table('screening_events')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_status_created_at')
        batch_op.drop_index(batch_op.f('ix_notifications_consultation_id'))

    op.drop_table('notifications')
    with op.batch_alter_table('patient_diagnoses', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_diagnoses_patient_id_condition_code')

    op.drop_table('patient_diagnoses')
    with op.batch_alter_table('consultations', schema=None) as batch_op:
        batch_op.drop_index('uq_consultations_physician_id_starts_at', sqlite_where=sa.text("status NOT IN ('cancelled', 'refused')"), postgresql_where=sa.text("status NOT IN ('cancelled', 'refused')"))
        batch_op.drop_index('ix_consultations_status_starts_at')
        batch_op.drop_index('ix_consultations_patient_id_starts_at')

    op.drop_table('consultations')
    with op.batch_alter_table('availability_exceptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_availability_exceptions_physician_id'))

    op.drop_table('availability_exceptions')
    with op.batch_alter_table('questionnaires', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_questionnaires_code'))

    op.drop_table('questionnaires')
    with op.batch_alter_table('conditions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conditions_code'))

    op.drop_table('conditions')
