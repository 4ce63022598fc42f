"""consent templates, documents, codes, signed consents

Revision ID: c3c0de5e0003
Revises: b2c0ffee0002
Create Date: 2026-11-22 16:03:10.997042
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'c3c0de5e0003'
down_revision: str | None = 'b2c0ffee0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('consent_templates',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.Enum('telemedicine_care', 'recording', 'personal_data', name='consentpurpose', native_enum=False, length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('draft', 'published', name='templatestatus', native_enum=False, length=24), nullable=False),
    sa.Column('material', sa.Boolean(), nullable=False),
    sa.Column('title_ru', sa.String(length=200), nullable=False),
    sa.Column('body_ru', sa.Text(), nullable=False),
    sa.Column('title_en', sa.String(length=200), nullable=False),
    sa.Column('body_en', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_user_id', sa.Uuid(), nullable=True),
    sa.Column('published_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('published_by_user_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_consent_templates_created_by_user_id_users')),
    sa.ForeignKeyConstraint(['published_by_user_id'], ['users.id'], name=op.f('fk_consent_templates_published_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_templates')),
    sa.UniqueConstraint('purpose', 'version', name=op.f('uq_consent_templates_purpose_version'))
    )
    op.create_table('consent_documents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('pdf', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_user_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_consent_documents_created_by_user_id_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_consent_documents_patient_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['template_id'], ['consent_templates.id'], name=op.f('fk_consent_documents_template_id_consent_templates'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_documents'))
    )
    with op.batch_alter_table('consent_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_documents_patient_id'), ['patient_id'], unique=False)

    op.create_table('consent_otps',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('document_id', sa.Uuid(), nullable=False),
    sa.Column('document_sha256', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.Enum('email', 'sms', name='otpchannel', native_enum=False, length=8), nullable=False),
    sa.Column('destination_masked', sa.String(length=64), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.SmallInteger(), nullable=False),
    sa.Column('used_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['document_id'], ['consent_documents.id'], name=op.f('fk_consent_otps_document_id_consent_documents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_otps'))
    )
    with op.batch_alter_table('consent_otps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_otps_document_id'), ['document_id'], unique=False)

    op.create_table('consents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('document_id', sa.Uuid(), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.Enum('telemedicine_care', 'recording', 'personal_data', name='consentpurpose', native_enum=False, length=24), nullable=False),
    sa.Column('template_version', sa.Integer(), nullable=False),
    sa.Column('template_sha256', sa.String(length=64), nullable=False),
    sa.Column('document_sha256', sa.String(length=64), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('level', sa.Enum('simple', 'enhanced_unqualified', 'enhanced_qualified', 'in_person', name='signaturelevel', native_enum=False, length=24), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('evidence_sha256', sa.String(length=64), nullable=False),
    sa.Column('signature_blob', sa.LargeBinary(), nullable=True),
    sa.Column('signature_media_type', sa.String(length=64), nullable=True),
    sa.Column('signed_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('signed_by_user_id', sa.Uuid(), nullable=False),
    sa.Column('sealed_payload', sa.Text(), nullable=False),
    sa.Column('seal', sa.String(length=128), nullable=False),
    sa.Column('seal_key_id', sa.String(length=64), nullable=False),
    sa.Column('withdrawn_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_by_user_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['document_id'], ['consent_documents.id'], name=op.f('fk_consents_document_id_consent_documents'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_consents_patient_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['signed_by_user_id'], ['users.id'], name=op.f('fk_consents_signed_by_user_id_users')),
    sa.ForeignKeyConstraint(['template_id'], ['consent_templates.id'], name=op.f('fk_consents_template_id_consent_templates'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['withdrawn_by_user_id'], ['users.id'], name=op.f('fk_consents_withdrawn_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consents')),
    sa.UniqueConstraint('document_id', name=op.f('uq_consents_document_id'))
    )
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.create_index('ix_consents_patient_purpose', ['patient_id', 'purpose'], unique=False)

    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('snils', sa.String(length=11), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_column('snils')

    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index('ix_consents_patient_purpose')

    op.drop_table('consents')
    with op.batch_alter_table('consent_otps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_otps_document_id'))

    op.drop_table('consent_otps')
    with op.batch_alter_table('consent_documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_documents_patient_id'))

    op.drop_table('consent_documents')
    op.drop_table('consent_templates')
