"""recordings

Revision ID: b8f2d1ee0008
Revises: a7e1c0de0007
Create Date: 2026-11-22 21:42:44.127818
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db.base


revision: str = 'b8f2d1ee0008'
down_revision: str | None = 'a7e1c0de0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('recordings',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('consultation_id', sa.Uuid(), nullable=False),
    sa.Column('state', sa.Enum('recording', 'stopped', 'complete', 'partial', 'damaged', 'erased', name='recordingstate', native_enum=False, length=16), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(length=64), nullable=True),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('started_at', server.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stop_reason', sa.String(length=64), nullable=True),
    sa.Column('finalised_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('problems', sa.JSON(), nullable=False),
    sa.Column('gaps', sa.JSON(), nullable=False),
    sa.Column('origin', sa.Double(), nullable=True),
    sa.Column('manifest', sa.Text(), nullable=True),
    sa.Column('manifest_seal', sa.String(length=128), nullable=True),
    sa.Column('seal_key_id', sa.String(length=64), nullable=True),
    sa.Column('legal_hold', sa.Boolean(), nullable=False),
    sa.Column('erased_at', server.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_recordings_consultation_id_consultations'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recordings'))
    )
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recordings_consultation_id'), ['consultation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recordings_state'), ['state'], unique=False)

    op.create_table('recording_outputs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('recording_id', sa.Uuid(), nullable=False),
    sa.Column('participant', sa.String(length=16), nullable=False),
    sa.Column('storage_key', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('plaintext_size', sa.Integer(), nullable=False),
    sa.Column('media_sha256', sa.String(length=64), nullable=False),
    sa.Column('media_sha1', sa.String(length=28), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('video_frames', sa.Integer(), nullable=False),
    sa.Column('audio_frames', sa.Integer(), nullable=False),
    sa.Column('codecs', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_recording_outputs_recording_id_recordings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recording_outputs')),
    sa.UniqueConstraint('recording_id', 'participant', name=op.f('uq_recording_outputs_recording_id_participant'))
    )
    with op.batch_alter_table('recording_outputs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_outputs_recording_id'), ['recording_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('recording_outputs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recording_outputs_recording_id'))

    op.drop_table('recording_outputs')
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recordings_state'))
        batch_op.drop_index(batch_op.f('ix_recordings_consultation_id'))

    op.drop_table('recordings')
