"""The QA reports as pages: the clinic's (admins and QA experts), one physician's, and the CSV export.

`/qa/reports` shows every physician's sampled share against the monthly floor, reviews done and overdue, scores,
critical failures, the items failed most and the monthly trend, filtered by period and department; each physician
links to `/qa/reports/physicians/{id}`, the one report a physician may open, and only their own (anyone else's is
the 404 page, as the clinic report is for them). `/qa/reports.csv` exports the clinic report's rows. The figures
come from `qa_audit.report_queries` (aggregates); charts are inline SVG next to tables with the same numbers.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from babel.dates import format_date
from babel.numbers import format_decimal, format_percent

from qa_audit import report_queries, reports
from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read
from server.http.principal import Principal
from server.http.problems import FieldError, ValidationFailed
from web import i18n
from web.i18n import N_
from web.pages import PageAnswer, PageHandler, page_handler, page_user, render
from web.qa_pages import charts

READERS = {Role.admin, Role.qa_expert}
NO_DEPARTMENT = "_none"  # the filter's value for physicians without a department
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run a cell starting with these
CSV_COLUMNS = (N_("Physician"), N_("Department"), N_("Consultations"), N_("Sampled"), N_("Sampled, %"),
               N_("Floor"), N_("Floor met"), N_("Reviews done"), N_("Overdue"), N_("Mean score"),
               N_("Critical failures"))


@dataclass(frozen=True)
class Filters:
    period: reports.Period
    department: report_queries.DepartmentFilter
    department_value: str  # as the form sends it back: "" (all), NO_DEPARTMENT or a name

    def query(self) -> str:
        """The filters as a query string, for links that keep them (the CSV, a physician's page)."""
        values = {"from": self.period.first, "to": self.period.last}
        if self.department_value:
            values["department"] = self.department_value
        return urlencode(values)


def _today(request: web.Request) -> dt.date:
    return utcnow().astimezone(ZoneInfo(request.app[keys.settings].clinic_time_zone)).date()


def _rate(request: web.Request) -> Fraction:
    return Fraction(str(request.app[keys.settings].qa_sampling_rate))


def parse_filters(query: Any, today: dt.date) -> Filters:
    """The period (`from`, `to`: YYYY-MM; by default this month and the 11 before) and `department`.

    A malformed month or a reversed or over-long period is a problem document naming the field: the form's
    month inputs never send one, so this is a hand-made link that should learn what is wrong.
    """
    default = reports.Period.ending(today)
    errors: list[FieldError] = []
    months: dict[str, str] = {}
    for name, fallback in (("from", default.first), ("to", default.last)):
        text = str(query.get(name, "")).strip()
        found = reports.parse_month(text) if text else fallback
        if found is None:
            errors.append(FieldError(field=name, message="Expected a month as YYYY-MM", type="month"))
        else:
            months[name] = found
    if not errors and months["from"] > months["to"]:
        errors.append(FieldError(field="to", message="The period ends before it starts", type="period"))
    elif not errors and len(reports.Period(months["from"], months["to"]).months) > reports.MAX_MONTHS:
        errors.append(FieldError(field="from", message=f"At most {reports.MAX_MONTHS} months at once",
                                 type="period"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    department_value = str(query.get("department", "")).strip()[:100]
    department: report_queries.DepartmentFilter = (report_queries.ALL if not department_value else
                                                   None if department_value == NO_DEPARTMENT else department_value)
    return Filters(reports.Period(months["from"], months["to"]), department, department_value)


def month_label(month: str, locale: str, pattern: str = "LLLL y") -> str:
    """«Март 2026» / "March 2026" (stand-alone month names, as a heading or an axis wants them)."""
    text = format_date(dt.date(int(month[:4]), int(month[5:]), 1), pattern, locale=locale)
    return text[:1].upper() + text[1:]


def _formatters(locale: str) -> tuple[Callable[[float], str], Callable[[float], str]]:
    def percent(value: float) -> str:
        return str(format_percent(value, "#,##0.#%", locale=locale))

    def number(value: float) -> str:
        return str(format_decimal(value, "#,##0.#", locale=locale))

    return percent, number


def _charts(report: reports.Report, *, locale: str, gettext: Callable[[str], str],
            names: bool) -> dict[str, Any]:
    """The share bars (one per physician, when `names`) and the monthly trends of share and score."""
    percent, number = _formatters(locale)
    found: dict[str, Any] = {}
    if names:
        found["share_chart"] = charts.share_bars(
            [charts.Bar(row.physician.name, row.figures.share, row.figures.floor_share, row.figures.floor_met)
             for row in report.physicians], chart_id="qa-share-chart",
            title=gettext("Sampled share per physician against the floor"),
            description=gettext("Bars show each physician's sampled share of consultations; the tick marks the "
                                "floor. The table of physicians lists the same figures."), percent=percent)
    points = [(month_label(p.month, locale, "LLL yy"), p.figures) for p in report.trend]
    found["trend_share_chart"] = charts.line(
        [charts.Point(label, figures.share) for label, figures in points], chart_id="qa-trend-share",
        title=gettext("Sampled share by month"),
        description=gettext("The dashed line is the sampling rate. The table of months lists the same figures."),
        maximum=max([float(report.rate) * 2, *(f.share or 0 for _, f in points)]), fmt=percent,
        reference=float(report.rate))
    found["trend_score_chart"] = charts.line(
        [charts.Point(label, figures.mean_score) for label, figures in points], chart_id="qa-trend-score",
        title=gettext("Mean review score by month"),
        description=gettext("Scores from 0 to 100. The table of months lists the same figures."), maximum=100.0,
        fmt=number)
    return found


def _locale(request: web.Request, principal: Principal) -> str:
    """The page's language, chosen as `render` chooses it, so charts and CSV speak the page's language."""
    return i18n.choose_locale(request, account_locale=principal.locale,
                              default=request.app[keys.settings].default_locale)


async def _context(request: web.Request, principal: Principal, report: reports.Report, filters: Filters, *,
                   names: bool) -> dict[str, Any]:
    locale = _locale(request, principal)
    gettext = i18n.translations(locale).gettext
    async with read(request) as db:
        texts = await report_queries.item_texts(db)
    return {"report": report, "filters": filters, "query": filters.query(),
            "months": {p.month: month_label(p.month, locale) for p in report.trend},
            "period_label": f"{month_label(report.period.first, locale)} – {month_label(report.period.last, locale)}",
            "items": [(reports.item_text(texts, item.key, locale), item.count) for item in report.failed_items],
            "rate": float(report.rate), **_charts(report, locale=locale, gettext=gettext, names=names)}


async def clinic_report_page(request: web.Request) -> web.Response:
    """Every physician's figures over the period, by department, with the trend (admins and QA experts)."""
    principal = await page_user(request, roles=READERS)
    filters = parse_filters(request.query, _today(request))
    async with read(request) as db:
        report = await report_queries.report(db, period=filters.period, rate=_rate(request), today=_today(request),
                                             department=filters.department)
        departments = await report_queries.departments(db)
    context = await _context(request, principal, report, filters, names=True)
    return await render(request, "qa/report.html", {**context, "departments": departments,
                                                    "no_department": NO_DEPARTMENT})


async def physician_report_page(request: web.Request) -> web.Response:
    """One physician's figures month by month: any for admins and QA experts, one's own for a physician."""
    principal = await page_user(request, roles={*READERS, Role.physician})
    try:
        physician_id = uuid.UUID(request.match_info["physician_id"])
    except ValueError:
        raise await _not_found(request, principal) from None
    filters = parse_filters(request.query, _today(request))
    async with read(request) as db:
        if principal.role is Role.physician and await report_queries.physician_of_user(
                db, principal.user_id) != physician_id:
            raise await _not_found(request, principal)
        report = await report_queries.report(db, period=filters.period, rate=_rate(request), today=_today(request),
                                             physician_id=physician_id)
    if not report.physicians:
        raise await _not_found(request, principal)
    context = await _context(request, principal, report, filters, names=False)
    return await render(request, "qa/report_physician.html", {
        **context, "physician": report.physicians[0].physician, "own": principal.role is Role.physician,
        "rate_fraction": report.rate})


async def own_report_page(request: web.Request) -> web.Response:
    """A physician's link to their own report, which the navigation can give without knowing their id."""
    principal = await page_user(request, roles={Role.physician})
    async with read(request) as db:
        physician_id = await report_queries.physician_of_user(db, principal.user_id)
    if physician_id is None:
        raise await _not_found(request, principal)
    raise web.HTTPSeeOther(f"/qa/reports/physicians/{physician_id}")


async def _not_found(request: web.Request, principal: Principal) -> PageAnswer:
    back = "/qa/reports" if principal.role in READERS else "/"
    return PageAnswer(await render(request, "error.html", {"kind": "not_found", "back": back}, status=404))


def spreadsheet_safe(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _decimal(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def csv_rows(report: reports.Report, *, gettext: Callable[[str], str]) -> list[list[str]]:
    """The header and one row per physician, as the clinic page's table (numbers with a point, not the locale's
    comma, so the file reads back as numbers anywhere)."""
    rows = [[gettext(column) for column in CSV_COLUMNS]]
    for row in report.physicians:
        f = row.figures
        rows.append([spreadsheet_safe(cell) for cell in (
            row.physician.name, row.physician.department if row.physician.department is not None
            else gettext("No department"), f.consultations, f.sampled,
            _decimal(f.share * 100 if f.share is not None else None), f.floor,
            gettext("yes") if f.floor_met else gettext("no"), f.done, f.overdue, _decimal(f.mean_score),
            f.critical_failures)])
    return rows


async def clinic_report_csv(request: web.Request) -> web.Response:
    """The clinic report's physician rows as CSV (UTF-8 with a byte order mark, so spreadsheets read Cyrillic)."""
    principal = await page_user(request, roles=READERS)
    filters = parse_filters(request.query, _today(request))
    async with read(request) as db:
        report = await report_queries.report(db, period=filters.period, rate=_rate(request), today=_today(request),
                                             department=filters.department)
    locale = _locale(request, principal)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(csv_rows(report, gettext=i18n.translations(locale).gettext))
    name = f"qa-report-{filters.period.first}-{filters.period.last}.csv"
    return web.Response(body=("\ufeff" + buffer.getvalue()).encode(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-store", "Content-Language": locale})


def setup(app: web.Application) -> None:
    """The report routes (web.pages.setup calls this once, after the staff pages, whose filters it uses)."""
    routes: list[tuple[str, PageHandler]] = [
        ("/qa/reports", clinic_report_page),
        ("/qa/reports.csv", clinic_report_csv),
        ("/qa/reports/physicians/{physician_id}", physician_report_page),
        ("/qa/reports/mine", own_report_page),
    ]
    for path, handler in routes:
        app.router.add_get(path, page_handler(handler))
