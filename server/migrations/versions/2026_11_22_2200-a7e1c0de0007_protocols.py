"""consultation protocols

Revision ID: a7e1c0de0007
Revises: f6e57a110006
Create Date: 2026-11-22 22:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'a7e1c0de0007'
down_revision: str | None = 'f6e57a110006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('protocols',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('physician_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Enum('primary', 'repeat', name='consultationkind', native_enum=False, length=16), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('draft', sa.JSON(), nullable=True),
    sa.Column('draft_reason', sa.Text(), nullable=True),
    sa.Column('draft_updated_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('signed_versions', sa.Integer(), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_protocols_consultation_id_consultations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_protocols_patient_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['physician_id'], ['physicians.id'], name=op.f('fk_protocols_physician_id_physicians'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_protocols')),
    sa.UniqueConstraint('consultation_id', name=op.f('uq_protocols_consultation_id'))
    )
    with op.batch_alter_table('protocols', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_protocols_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_protocols_physician_id'), ['physician_id'], unique=False)

    op.create_table('protocol_documents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('protocol_id', sa.Uuid(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('amendment_reason', sa.Text(), nullable=True),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('pdf', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_user_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_protocol_documents_created_by_user_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['protocol_id'], ['protocols.id'], name=op.f('fk_protocol_documents_protocol_id_protocols'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_protocol_documents'))
    )
    with op.batch_alter_table('protocol_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_protocol_documents_protocol_id'), ['protocol_id'], unique=False)

    op.create_table('protocol_versions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('protocol_id', sa.Uuid(), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('physician_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('document_id', sa.Uuid(), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('amendment_reason', sa.Text(), nullable=True),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('pdf_sha256', sa.String(length=64), nullable=False),
    sa.Column('pdf_size', sa.Integer(), nullable=False),
    sa.Column('level', sa.Enum('enhanced_qualified', 'enhanced_unqualified', 'server_session', name='protocolsignaturelevel', native_enum=False, length=24), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('evidence_sha256', sa.String(length=64), nullable=False),
    sa.Column('signature_cms', sa.LargeBinary(), nullable=True),
    sa.Column('signed_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('signed_by_user_id', sa.Uuid(), nullable=False),
    sa.Column('sealed_payload', sa.Text(), nullable=False),
    sa.Column('seal', sa.String(length=128), nullable=False),
    sa.Column('seal_key_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_protocol_versions_consultation_id_consultations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['document_id'], ['protocol_documents.id'], name=op.f('fk_protocol_versions_document_id_protocol_documents'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_protocol_versions_patient_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['physician_id'], ['physicians.id'], name=op.f('fk_protocol_versions_physician_id_physicians'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['protocol_id'], ['protocols.id'], name=op.f('fk_protocol_versions_protocol_id_protocols'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['signed_by_user_id'], ['users.id'], name=op.f('fk_protocol_versions_signed_by_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_protocol_versions')),
    sa.UniqueConstraint('document_id', name=op.f('uq_protocol_versions_document_id')),
    sa.UniqueConstraint('protocol_id', 'version', name=op.f('uq_protocol_versions_protocol_id_version'))
    )
    with op.batch_alter_table('protocol_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_protocol_versions_consultation_id'), ['consultation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_protocol_versions_patient_id'), ['patient_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('protocol_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_protocol_versions_patient_id'))
        batch_op.drop_index(batch_op.f('ix_protocol_versions_consultation_id'))

    op.drop_table('protocol_versions')
    with op.batch_alter_table('protocol_documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_protocol_documents_protocol_id'))

    op.drop_table('protocol_documents')
    with op.batch_alter_table('protocols', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_protocols_physician_id'))
        batch_op.drop_index(batch_op.f('ix_protocols_patient_id'))

    op.drop_table('protocols')
