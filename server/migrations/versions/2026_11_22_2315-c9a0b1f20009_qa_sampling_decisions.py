"""qa sampling decisions

Revision ID: c9a0b1f20009
Revises: b8f2d1ee0008
Create Date: 2026-11-22 23:15:26.343433
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'c9a0b1f20009'
down_revision: str | None = 'b8f2d1ee0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('qa_sampling_decisions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('physician_id', sa.Uuid(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('sampled', sa.Boolean(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('draw_value', sa.String(length=16), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('secret_id', sa.String(length=16), nullable=False),
    sa.Column('decided_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('topped_up_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_qa_sampling_decisions_consultation_id_consultations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['physician_id'], ['physicians.id'], name=op.f('fk_qa_sampling_decisions_physician_id_physicians'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_sampling_decisions')),
    sa.UniqueConstraint('consultation_id', name=op.f('uq_qa_sampling_decisions_consultation_id'))
    )
    with op.batch_alter_table('qa_sampling_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qa_sampling_decisions_month'), ['month'], unique=False)
        batch_op.create_index(batch_op.f('ix_qa_sampling_decisions_physician_id'), ['physician_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('qa_sampling_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_qa_sampling_decisions_physician_id'))
        batch_op.drop_index(batch_op.f('ix_qa_sampling_decisions_month'))

    op.drop_table('qa_sampling_decisions')
