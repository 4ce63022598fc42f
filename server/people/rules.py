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


def snils_valid(digits: str) -> bool:
    """The СНИЛС check number: the first nine digits weighted 9..1, summed, taken modulo 101 (100 is 00).
    Numbers up to 001-001-998 were issued before check numbers existed, so any check passes there."""
    if len(digits) != 11 or not digits.isdigit():
        return False
    number, check = digits[:9], int(digits[9:])
    if int(number) <= 1001998:
        return True
    total = sum(int(d) * w for d, w in zip(number, range(9, 0, -1), strict=True))
    return check == total % 101 % 100
