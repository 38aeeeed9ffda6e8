"""The morning page: the funnel, who asked, who replied, what goes out next, what failed."""

from __future__ import annotations

import logging

from flask import current_app, flash, redirect, render_template, url_for

from .. import mailcheck, outbound, queue, stats
from ..extensions import db
from . import bp, chart, zone
from .mailboxes_views import health

log = logging.getLogger(__name__)


@bp.get("/")
def dashboard():
    data = stats.overview(db.session, zone())
    boxes, others = health(db.session, current_app.config, data.mailboxes)
    return render_template(
        "admin/dashboard.html", o=data, funnel=data.activity.funnel(), windows=stats.WINDOWS,
        chart=_chart(data.activity), jobs=_queue_health(), people_note=stats.PEOPLE_NOTE,
        main_steps=stats.MAIN_STEPS, paused=outbound.breaker(db.session, current_app.config),
        warnings=mailcheck.warnings(current_app.config), boxes=boxes, other_polls=others,
    )


def _chart(activity: stats.Activity) -> chart.Chart:
    """The daily bars, summed up by the funnel's own column, so the two never disagree."""
    days = stats.CHART_DAYS
    return chart.daily(activity.series(days), asked=activity.total("Asked", days),
                       replied=activity.total("Replied", days))


def _queue_health() -> dict | None:
    """The RQ queue's counts, or None when Redis cannot be reached (the page still renders)."""
    try:
        return queue.health()
    except Exception as exc:
        log.warning("queue health unavailable: %s", exc)
        return None


@bp.post("/jobs/retry")
def retry_jobs():
    try:
        count = queue.retry_failed()
    except Exception as exc:
        flash(f"Redis cannot be reached ({exc.__class__.__name__}); nothing was retried.", "error")
        return redirect(url_for("admin.dashboard"))
    flash(f"{count} failed job{'s' if count != 1 else ''} put back on the queue.", "ok")
    return redirect(url_for("admin.dashboard"))
