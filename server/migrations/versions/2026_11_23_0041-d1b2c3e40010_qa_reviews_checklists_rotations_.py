"""qa reviews checklists rotations departments

Revision ID: d1b2c3e40010
Revises: c9a0b1f20009
Create Date: 2026-11-23 00:41:13.331427
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'd1b2c3e40010'
down_revision: str | None = 'c9a0b1f20009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('qa_checklist_templates',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('title', sa.JSON(), nullable=False),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_checklist_templates')),
    sa.UniqueConstraint('code', 'version', name=op.f('uq_qa_checklist_templates_code_version'))
    )
    op.create_table('qa_secret_rotations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('secret_id', sa.String(length=16), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('recorded_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_secret_rotations')),
    sa.UniqueConstraint('secret_id', name=op.f('uq_qa_secret_rotations_secret_id'))
    )
    op.create_table('qa_reviews',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('physician_id', sa.Uuid(), nullable=False),
    sa.Column('expert_id', sa.Uuid(), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('assigned', 'in_review', 'submitted', 'acknowledged', 'disputed', 'closed', name='reviewstatus', native_enum=False, length=16), nullable=False),
    sa.Column('assigned_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('assigned_by', sa.Uuid(), nullable=True),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('notes', sa.JSON(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('started_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('submitted_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('score', sa.Double(), nullable=True),
    sa.Column('critical_failures', sa.Integer(), nullable=True),
    sa.Column('failed_items', sa.JSON(), nullable=False),
    sa.Column('response', sa.Text(), nullable=True),
    sa.Column('responded_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['assigned_by'], ['users.id'], name=op.f('fk_qa_reviews_assigned_by_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_qa_reviews_consultation_id_consultations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['expert_id'], ['qa_experts.id'], name=op.f('fk_qa_reviews_expert_id_qa_experts'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['physician_id'], ['physicians.id'], name=op.f('fk_qa_reviews_physician_id_physicians'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['template_id'], ['qa_checklist_templates.id'], name=op.f('fk_qa_reviews_template_id_qa_checklist_templates'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_reviews')),
    sa.UniqueConstraint('consultation_id', 'round', name=op.f('uq_qa_reviews_consultation_id_round'))
    )
    with op.batch_alter_table('qa_reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qa_reviews_consultation_id'), ['consultation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_qa_reviews_expert_id'), ['expert_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_qa_reviews_physician_id'), ['physician_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_qa_reviews_status'), ['status'], unique=False)

    with op.batch_alter_table('physicians', schema=None) as batch_op:
        batch_op.add_column(sa.Column('department', sa.String(length=100), nullable=True))

    with op.batch_alter_table('qa_experts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('department', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('physician_id', sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_qa_experts_physician_id_physicians'), 'physicians', ['physician_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('qa_experts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_qa_experts_physician_id_physicians'), type_='foreignkey')
        batch_op.drop_column('physician_id')
        batch_op.drop_column('department')

    with op.batch_alter_table('physicians', schema=None) as batch_op:
        batch_op.drop_column('department')

    with op.batch_alter_table('qa_reviews', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_qa_reviews_status'))
        batch_op.drop_index(batch_op.f('ix_qa_reviews_physician_id'))
        batch_op.drop_index(batch_op.f('ix_qa_reviews_expert_id'))
        batch_op.drop_index(batch_op.f('ix_qa_reviews_consultation_id'))

    op.drop_table('qa_reviews')
    op.drop_table('qa_secret_rotations')
    op.drop_table('qa_checklist_templates')
