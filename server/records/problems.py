"""The protocol's refusals, each a problem document with a stable code (its `type` is `/problems/<code>`)."""

from __future__ import annotations

from server.http.problems import Conflict, FieldError, ProblemError
from server.records.rules import FieldProblem


def _errors(problems: list[FieldProblem]) -> list[FieldError]:
    return [FieldError(field=p.field, message=p.message, type=p.type) for p in problems]


class PrimaryConsultationRule(ProblemError):
    """Diagnosis or prescriptions sent for a primary consultation: the code is the first rule broken, `rules`
    lists every one, and each refused field is in `errors` with its rule as the type."""

    status, title = 422, "A primary consultation cannot carry a diagnosis or prescriptions"

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems), code=problems[0].type, errors=_errors(problems),
                         rules=[p.type for p in problems])


class ProtocolIncomplete(ProblemError):
    status, code, title = 422, "protocol_incomplete", "Fill in what the protocol needs before signing"

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems), errors=_errors(problems))


class DraftOutdated(ProblemError):
    """The draft changed since the revision this save was based on (another tab, another device)."""

    status, code, title = 412, "draft_outdated", "The draft was changed elsewhere; reload it before saving"

    def __init__(self, current: int) -> None:
        super().__init__(f"the draft is at version {current}", current_version=current,
                         headers={"ETag": f'"{current}"'})


class PreconditionRequired(ProblemError):
    status, code, title = 428, "precondition_required", "Say which draft version you edited (If-Match or version)"


class ProtocolNotOpen(Conflict):
    code, title = "protocol_not_open", "A protocol is written once the call has started"


class ConsultationNotCompleted(Conflict):
    code, title = "consultation_not_completed", "The protocol is signed after the consultation has ended"


class AmendmentRequired(Conflict):
    code, title = "amendment_required", "The protocol is signed; open an amendment, with its reason, to change it"


class AmendmentOpen(Conflict):
    code, title = "amendment_open", "A draft is already open; sign or continue it"


class NoDraft(Conflict):
    code, title = "no_draft", "There is no draft to sign"


class DocumentOutdated(Conflict):
    code, title = "document_outdated", "The draft changed after this PDF was prepared; prepare it again"


class SignatureRefused(ProblemError):
    """An enhanced signature that does not verify, with the verifier's reason as the code."""

    status, title = 422, "The signature was not accepted"

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail, code=code, errors=[FieldError(field="signature_cms_base64", message=detail,
                                                               type=code)])
