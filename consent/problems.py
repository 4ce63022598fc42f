"""The consent domain's refusals, each a problem document with a stable code."""

from __future__ import annotations

from typing import Any

from server.http.problems import Conflict, FieldError, ProblemError


class TemplateImmutable(Conflict):
    code, title = "template_published", "A published consent version never changes; draft a new version"


class NoPublishedTemplate(Conflict):
    code, title = "no_published_template", "The clinic has not published this consent document yet"


class AlreadySigned(Conflict):
    code, title = "already_signed", "This document is already signed"


class DocumentOutdated(Conflict):
    code, title = "document_outdated", "The clinic has published a new version of this text; open it again"


class DraftConflict(Conflict):
    code, title = "draft_conflict", "Someone else drafted a version of this text at the same moment; reload"


class ConsentDamaged(Conflict):
    code, title = "consent_damaged", "The stored consent does not match its document; run its verification"


class AlreadyWithdrawn(Conflict):
    code, title = "already_withdrawn", "This consent is already withdrawn"


class EnhancedNotConfigured(Conflict):
    code, title = "enhanced_not_configured", "The clinic does not accept enhanced e-signatures (no trusted CAs)"


class NoDestination(Conflict):
    code, title = "no_destination", "There is no address or phone number to send the code to"


class TooManyCodes(ProblemError):
    status, code, title = 429, "too_many_codes", "Too many codes were requested for this document; try later"


class CodeNotSent(ProblemError):
    status, code, title = 503, "code_not_sent", "The code could not be sent just now; try again in a minute"


class CodeRefused(ProblemError):
    """A wrong, expired, used or exhausted code; the answer says how many tries are left."""

    status, title = 422, "The code does not sign this document"

    def __init__(self, code: str, detail: str, *, attempts_left: int | None = None) -> None:
        extra: dict[str, Any] = {} if attempts_left is None else {"attempts_left": attempts_left}
        super().__init__(detail, code=code, errors=[FieldError(field="code", message=detail, type=code)], **extra)


class SignatureRefused(ProblemError):
    """An enhanced signature that does not verify, with the verifier's reason as the code."""

    status, title = 422, "The signature was not accepted"

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail, code=code, errors=[FieldError(field="signature", message=detail, type=code)])


class ConsentRequired(Conflict):
    """Check-in or joining stopped by the gate: which documents need signing, and why."""

    code, title = "consent_required", "Please sign the consent documents first"

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        detail = "; ".join(f"{p['purpose']}: {p['problem']}" for p in problems)
        super().__init__(detail, consents=problems)
