"""The review screen (`/qa/reviews/{id}`): the recording of both participants on one timeline, the protocol, the
screening answers, the consent status at the call, the chat, and the checklist with notes pinned to moments.

The assigned expert fills it in; an admin reads it (and plays the recording through the player, which asks them
for a reason); anyone else gets the 404 page. qa.js autosaves the checklist through the API as the expert works;
without scripts the page's own form does the essential: "Save" posts it here, "Submit" saves what is on the
screen and submits it in the same request, through the same services, so what the expert sees is what counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from media.recording.models import Recording
from qa_audit import materials, reviews, rules
from qa_audit.models import ChecklistTemplate, Review, ReviewStatus
from qa_audit.problems import ReviewIncomplete, ReviewInvalid, ReviewOutdated, WrongStep
from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import Principal, audit_context
from server.http.problems import NotFound, ProblemError
from web.i18n import N_
from web.pages import PageHandler, page_handler, read_form, render
from web.qa_pages.queue import clinic_today, clinic_zone, not_found, page_reader, path_id
from web.staff_pages.consultation import screening_answers

READERS = {Role.qa_expert, Role.admin}
BLANK_NOTES = 1  # an empty note row below the kept ones, for the form without scripts
# The service's messages (English, as the API sends them), marked so the page shows them translated.
PROBLEM_TEXTS = (N_("Answer yes, no or not applicable"), N_("Say what was wrong"), N_("Answer yes, no or na"),
                 N_("No such item in this checklist"), N_("A moment of the recording in seconds, from 0"),
                 N_("Give the moment of the recording, in seconds"), N_("Write the note"),
                 N_("At most 2000 characters"), N_("At most 200 notes"))
#: Why a consultation was sampled, as the review screen names it (qa_audit.sampling.Reason).
REASONS = {"random": N_("Random draw"), "floor": N_("Monthly minimum (top-up)"),
           "complaint": N_("The patient complained"), "low_rating": N_("Low rating from the patient"),
           "red_flag": N_("Red flag at check-in"), "short_call": N_("Very short call"),
           "interrupted": N_("Interrupted call"), "technical_failure": N_("Technical failure"),
           "recording_damaged": N_("Damaged recording"), "recording_partial": N_("Partial recording"),
           "forbidden_fields": N_("Diagnosis or prescription tried in a primary consultation"),
           "new_physician": N_("One of the physician's first consultations")}
WRONG_TIME = N_("Write the moment as minutes:seconds, e.g. 3:12")
OUTDATED = N_("The review was changed in another window. Reload the page to see it before saving.")
WRONG_STEP = N_("This review can no longer be changed.")
INCOMPLETE = N_("Answer every item, and say what was wrong for each “no”, before submitting.")
INVALID = N_("Some answers could not be saved; see the marked items.")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,3}):(\d{1,2}(?:\.\d+)?)$")


def clock(seconds: float | None) -> str:
    """A moment of the recording as the page shows and takes it: m:ss, or h:mm:ss past an hour."""
    if seconds is None:
        return ""
    whole = max(0, math.floor(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def parse_clock(text: str) -> float | None:
    """m:ss, h:mm:ss or plain seconds; None for nothing written; ValueError for anything else."""
    text = text.strip()
    if not text:
        return None
    match = _CLOCK.match(text)
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    value = float(text)  # ValueError for words
    if not math.isfinite(value):
        raise ValueError(text)
    return value


class Posted:
    """The checklist form as the services take it (the same reading as qa.js's `collect`), with where each kept
    note came from on the form, so a problem the service names by list index lands on the right row."""

    def __init__(self, form: Mapping[str, str], items: Sequence[Mapping[str, Any]]) -> None:
        self.problems: list[rules.Problem] = []
        self.answers: dict[str, dict[str, Any]] = {}
        for item in items:
            key = item["key"]
            answer = form.get(f"answer-{key}", "").strip() or None
            comment = form.get(f"comment-{key}", "").strip()
            at = self._time(form.get(f"at-{key}", ""), f"answers.{key}.at")
            if answer or comment or at is not None:
                self.answers[key] = {"answer": answer, "comment": comment, "at": at}
        self.notes: list[dict[str, Any]] = []
        self.note_rows: list[int] = []
        index = 0
        while f"note-{index}-text" in form or f"note-{index}-at" in form:
            text = form.get(f"note-{index}-text", "").strip()
            at_text = form.get(f"note-{index}-at", "")
            if text or at_text.strip():
                at = self._time(at_text, f"notes.{len(self.notes)}.at")
                self.notes.append({"at": at, "text": text})
                self.note_rows.append(index)
            index += 1
        self.summary = form.get("summary", "").strip()
        try:
            self.revision: int | None = int(form.get("revision", ""))
        except ValueError:
            self.revision = None

    def _time(self, text: str, field: str) -> float | None:
        try:
            return parse_clock(text)
        except ValueError:
            self.problems.append(rules.Problem(field, WRONG_TIME))
            return None

    def errors(self, problems: Sequence[Any]) -> dict[str, str]:
        """Problems by the form's own field names (`answer-consent`, `note-2-text`), for the template."""
        found: dict[str, str] = {}
        for problem in problems:
            parts = problem.field.split(".")
            if parts[0] == "answers" and len(parts) >= 2:
                name = f"{parts[2] if len(parts) > 2 else 'answer'}-{parts[1]}"
            elif parts[0] == "notes" and len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < len(
                    self.note_rows):
                name = f"note-{self.note_rows[int(parts[1])]}-{parts[2] if len(parts) > 2 else 'text'}"
            else:
                name = parts[0]
            found.setdefault(name, problem.message)
        return found


def _values(review: Review) -> dict[str, Any]:
    """The stored draft as the form's fields."""
    answers = {key: {"answer": entry.get("answer") or "", "comment": entry.get("comment") or "",
                     "at": clock(entry.get("at"))} for key, entry in review.answers.items()}
    notes = [{"at": clock(note["at"]), "text": note["text"], "seconds": note["at"]} for note in review.notes]
    return {"answers": answers, "notes": notes, "summary": review.summary, "revision": review.revision}


def _posted_values(form: Mapping[str, str], posted: Posted, items: Sequence[Mapping[str, Any]],
                   revision: int) -> dict[str, Any]:
    """What the expert posted, shown back as they wrote it next to what was wrong with it."""
    answers = {item["key"]: {"answer": form.get(f"answer-{item['key']}", ""),
                             "comment": form.get(f"comment-{item['key']}", ""),
                             "at": form.get(f"at-{item['key']}", "")} for item in items}
    notes = [{"at": form.get(f"note-{row}-at", ""), "text": form.get(f"note-{row}-text", ""), "seconds": None}
             for row in posted.note_rows]
    return {"answers": answers, "notes": notes, "summary": form.get("summary", ""), "revision": revision}


def _videos(material: materials.Materials, principal: Principal) -> list[dict[str, Any]]:
    """The synced players' sources. An admin plays through the recording page instead, which asks the reason
    the playback API wants from them, so no reasonless stream URL is put on this page for them."""
    found = []
    for item in material.recordings:
        found.append({"recording": item.recording, "duration_ms": max(item.recording.duration_ms or 0, 1),
                      "outputs": [] if principal.role is Role.admin else [
                          {"participant": o.participant,
                           "url": f"/api/v1/recordings/{item.recording.id}/media?participant={o.participant}"}
                          for o in item.outputs]})
    return found


def _chat(material: materials.Materials) -> list[dict[str, Any]]:
    """Chat lines with their moment in the (first) recording, when they fall inside it, so a click seeks there."""
    recording: Recording | None = material.recordings[0].recording if material.recordings else None
    origin = (recording.origin or recording.started_at.timestamp()) if recording else None
    lines = []
    for line in material.chat:
        at = line.sent_at.timestamp() - origin if origin is not None else None
        inside = at is not None and recording is not None and 0 <= at <= (recording.duration_ms or 0) / 1000 + 1
        lines.append({"line": line, "at": at if inside else None, "clock": clock(at) if inside else ""})
    return lines


async def review_response(request: web.Request, *, values: dict[str, Any] | None = None,
                          errors: dict[str, str] | None = None, message: str | None = None,
                          status: int = 200) -> web.Response:
    """The review screen; loading its materials is an access-log entry for the patient (`materials.load`)."""
    principal, reader = await page_reader(request, READERS)
    review_id = await path_id(request)
    try:
        async with tx(request) as db:
            material = await materials.load(db, reader, review_id, policy=request.app[keys.consent].policy,
                                            ctx=audit_context(request, principal), now=utcnow())
            template = await reviews.template_of(db, material.review)
    except NotFound:
        raise await not_found(request) from None
    review = material.review
    editable = principal.role is Role.qa_expert and review.status in (ReviewStatus.assigned, ReviewStatus.in_review)
    consultation = material.view.consultation
    return await render(request, "qa/review.html", {
        "review": review, "template": template, "items": _items(template), "mat": material, "c": consultation,
        "values": values or _values(review), "errors": errors or {}, "message": message, "editable": editable,
        "overdue": rules.overdue(review.status, review.due_on, clinic_today(request)),
        "videos": _videos(material, principal),
        "screening": screening_answers(material.screening.definition, material.screening.answers),
        "checkin": screening_answers(material.checkin.definition, material.checkin.answers),
        "chat": _chat(material), "clock": clock, "reason_names": REASONS, "blank_notes": BLANK_NOTES if editable else 0,
        "api_draft": f"/api/v1/qa/reviews/{review.id}/draft", "saved": request.query.get("saved"),
        "submitted": request.query.get("submitted"), "zone": clinic_zone(request)}, status=status)


def _items(template: ChecklistTemplate) -> list[dict[str, Any]]:
    return [{"key": item["key"], "text": item["text"], "weight": item["weight"], "critical": item["critical"]}
            for item in template.items]


async def review_page(request: web.Request) -> web.Response:
    return await review_response(request)


async def review_submit(request: web.Request) -> web.Response:
    """"Save" or "Submit" without scripts: the draft on the screen is saved, then (Submit) the review submitted.
    A refusal shows the page again with what was posted and each problem next to its item."""
    principal, reader = await page_reader(request, {Role.qa_expert})
    review_id = await path_id(request)
    form = await read_form(request)
    submitting = form.get("action") == "submit"
    ctx = audit_context(request, principal)
    try:
        async with tx(request) as db:
            review = await reviews.get(db, reader, review_id)
            template = await reviews.template_of(db, review)
    except NotFound:
        raise await not_found(request) from None
    posted = Posted(form, template.items)
    shown = _posted_values(form, posted, template.items, review.revision)
    if posted.problems:
        return await review_response(request, values=shown, errors=posted.errors(posted.problems), message=INVALID,
                                     status=422)
    try:
        async with tx(request) as db:
            review = await reviews.get(db, reader, review_id)
            await reviews.save_draft(db, review, reader, answers=posted.answers, notes=posted.notes,
                                     summary=posted.summary, revision=posted.revision, now=utcnow(), ctx=ctx)
        shown["revision"] = review.revision
        if submitting:
            async with tx(request) as db:
                review = await reviews.get(db, reader, review_id)
                await reviews.submit(db, review, reader, settings=request.app[keys.settings], now=utcnow(), ctx=ctx)
    except (ReviewInvalid, ReviewIncomplete) as problem:
        return await review_response(
            request, values=shown, errors=posted.errors(problem.errors or []),
            message=INCOMPLETE if isinstance(problem, ReviewIncomplete) else INVALID, status=422)
    except ReviewOutdated:  # another window saved since: show what is stored, as a reload would
        return await review_response(request, message=OUTDATED, status=412)
    except WrongStep:
        return await review_response(request, message=WRONG_STEP, status=409)
    except ProblemError as problem:
        if problem.status == 404:
            raise await not_found(request) from None
        raise
    raise web.HTTPSeeOther(f"/qa/reviews/{review_id}?{'submitted' if submitting else 'saved'}=1")


ROUTES: list[tuple[str, str, PageHandler]] = [
    ("GET", "/qa/reviews/{review_id}", review_page),
    ("POST", "/qa/reviews/{review_id}", review_submit),
]


def setup(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, page_handler(handler))

