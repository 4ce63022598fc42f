"""consultation feedback: patients' ratings and complaints, read by the QA sampling rules

Revision ID: e2c3d4f50011
Revises: d1b2c3e40010
Create Date: 2026-11-23 00:44:07.648314
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'e2c3d4f50011'
down_revision: str | None = 'd1b2c3e40010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('consultation_feedback',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=False),
    sa.Column('complaint', sa.Text(), nullable=True),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('rating BETWEEN 1 AND 5', name=op.f('ck_consultation_feedback_rating_range')),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_consultation_feedback_consultation_id_consultations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_consultation_feedback_patient_id_patients'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consultation_feedback')),
    sa.UniqueConstraint('consultation_id', name=op.f('uq_consultation_feedback_consultation_id'))
    )
    with op.batch_alter_table('consultation_feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consultation_feedback_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_consultation_feedback_patient_id'), ['patient_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('consultation_feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consultation_feedback_patient_id'))
        batch_op.drop_index(batch_op.f('ix_consultation_feedback_created_at'))

    op.drop_table('consultation_feedback')
