"""Who may see a patient's profile. Pure: the caller supplies the facts."""

from __future__ import annotations

import uuid

from server.auth.models import Role


def may_view_patient(*, viewer_role: Role, viewer_patient_id: uuid.UUID | None, patient_id: uuid.UUID) -> bool:
    """A patient sees only themself, an admin anyone. False means "not found", never "forbidden",
    so nobody learns which patient ids exist."""
    if viewer_role is Role.admin:
        return True
    return viewer_role is Role.patient and viewer_patient_id == patient_id
