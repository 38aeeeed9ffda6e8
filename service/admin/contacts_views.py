"""Contacts: the searchable list, one contact's timeline, and what an admin can do to them."""

from __future__ import annotations

from flask import Response, abort, current_app, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user

from .. import contacts, enrollments, intake, queue, roster, stats
from ..extensions import db
from ..models import Contact, Enrollment
from ..outbound import LimitError
from . import back, bp, confirm, csvio
from .forms import TagsForm

STATE_FILTERS = (("", "Any state"), ("hot", "Hot lead"), ("suppressed", "Suppressed"),
                 *((s, f"Sequence {s}") for s in roster.ENROLLMENT_STATES))
# How intake learnt another address of a person (ContactAddress.how), in the consultant's words.
ADDRESS_HOW = {
    "reply-to": "the Reply-To they asked us to answer",
    "plus-tag": "a +tag form of their address",
    "replied in thread": "replied in our thread from it",
    "from": "their mail came from it (we answer the Reply-To)",
}
SORT_LABELS = (("recent", "Latest activity"), ("newest", "Newest"), ("email", "Address A–Z"), ("name", "Name A–Z"))


def _filters() -> roster.Filters:
    args = request.args
    sort = args.get("sort", "recent")
    return roster.Filters(
        text=args.get("q", "")[:200], state=args.get("state", ""), campaign_id=args.get("campaign", type=int),
        tag=args.get("tag", "")[:100], sort=sort if sort in roster.SORTS else "recent",
    )


def _contact(contact_id: int) -> Contact:
    return db.session.get(Contact, contact_id) or abort(404)


def _enrollment(enrollment_id: int) -> Enrollment:
    return db.session.get(Enrollment, enrollment_id) or abort(404)


def _here(contact_id: int) -> str:
    return url_for("admin.contact_page", contact_id=contact_id)


@bp.get("/contacts")
def contact_list():
    filters = _filters()
    page = roster.page(db.session, filters, after=request.args.get("after"), before=request.args.get("before"))
    kept = {k: v for k, v in request.args.items() if k not in ("after", "before") and v}
    return render_template(
        "admin/contacts.html", page=page, filters=filters, kept=kept, campaigns=stats.campaign_names(db.session),
        state_filters=STATE_FILTERS, sorts=SORT_LABELS, bound=roster.COUNT_BOUND,
    )


@bp.get("/contacts/export.csv")
def contact_export():
    rows = csvio.export_rows(db.session, _filters())
    headers = {"Content-Disposition": "attachment; filename=contacts.csv"}
    return Response(stream_with_context(rows), mimetype="text/csv", headers=headers)


@bp.get("/contacts/<int:contact_id>")
def contact_page(contact_id: int):
    contact = _contact(contact_id)
    return render_template(
        "admin/contact.html", contact=contact, entries=roster.timeline(db.session, contact),
        why=roster.explain(db.session, contact, current_app.config["MAGNET_REPEAT_DAYS"]),
        suppressed=contacts.suppression(db.session, contact.email),
        tags_form=TagsForm(tags=contact.tags.replace(",", ", ")), address_how=ADDRESS_HOW,
    )


@bp.post("/contacts/<int:contact_id>/handled")
def contact_handled(contact_id: int):
    contact = _contact(contact_id)
    contacts.mark_handled(db.session, contact)
    db.session.commit()
    flash(f"{contact.name or contact.email} is marked handled and leaves the hot list.", "ok")
    return back(_here(contact_id))


@bp.post("/contacts/<int:contact_id>/tags")
def contact_tags(contact_id: int):
    contact, form = _contact(contact_id), TagsForm()
    try:
        if not form.validate_on_submit():
            raise ValueError("; ".join(form.tags.errors) or "the form expired, try again")
        tags = contacts.set_tags(db.session, contact, form.tags.data)
    except ValueError as exc:
        db.session.rollback()
        flash(f"Tags not saved: {exc}.", "error")
        return redirect(_here(contact_id))
    db.session.commit()
    flash(f"Tags saved: {', '.join(tags) or 'none'}.", "ok")
    return redirect(_here(contact_id))


@bp.route("/contacts/<int:contact_id>/unsubscribe", methods=["GET", "POST"])
def contact_unsubscribe(contact_id: int):
    contact = _contact(contact_id)
    if request.method == "GET":
        return confirm(f"Unsubscribe {contact.email}?", "Every sequence of theirs stops and the address is suppressed: "
                       "nothing will be sent to it again, even if they ask for a magnet.", "Unsubscribe",
                       _here(contact_id))
    intake.unsubscribe(db.session, contact.email, f"unsubscribed by {current_user.email}")
    db.session.commit()
    flash(f"{contact.email} is unsubscribed.", "ok")
    return redirect(_here(contact_id))


@bp.route("/contacts/<int:contact_id>/erase", methods=["GET", "POST"])
def contact_erase(contact_id: int):
    contact = _contact(contact_id)
    if request.method == "GET":
        return confirm(f"Erase {contact.email}?", "This deletes their personal data for good and cannot be undone:",
                       "Erase for good", _here(contact_id), detail=ERASE_DETAIL)
    contacts.erase(db.session, contact)
    db.session.commit()
    flash("Erased. Only a one-way hash of the address is kept, so they are never mailed or re-added.", "ok")
    return redirect(url_for("admin.contact_list"))


ERASE_DETAIL = [
    "the contact, their tags and sequences;",
    "every message they sent us (raw mail included) and every mail we sent them;",
    "their timeline.",
    "Not touched: copies in your own mailbox (INBOX, Sent) and in server logs; delete those there.",
]


@bp.get("/enrollments/<int:enrollment_id>/stop")
def enrollment_stop_confirm(enrollment_id: int):
    e = _enrollment(enrollment_id)
    return confirm(f"Stop {e.campaign.name} for {e.contact.email}?", "No further follow-ups of this campaign go to "
                   "them. It cannot be resumed.", "Stop the sequence", _here(e.contact_id))


@bp.post("/enrollments/<int:enrollment_id>/<any(pause, resume, stop):action>")
def enrollment_move(enrollment_id: int, action: str):
    e = _enrollment(enrollment_id)
    try:
        row = enrollments.admin_move(db.session, e, action, current_user.email, current_app.config["MAIL_DOMAIN"])
    except enrollments.EnrollmentError as exc:
        db.session.rollback()
        flash(f"Not changed: {exc}.", "error")
        return redirect(_here(e.contact_id))
    db.session.commit()
    if row is not None:
        queue.queue_send(row)
    flash(f"{e.campaign.name}: the sequence is {e.state} now.", "ok")
    return redirect(_here(e.contact_id))


@bp.post("/enrollments/<int:enrollment_id>/resend")
def enrollment_resend(enrollment_id: int):
    e, settings = _enrollment(enrollment_id), current_app.config
    try:
        row = enrollments.resend_magnet(db.session, e, settings["MAIL_DOMAIN"], settings["MAGNET_REPEAT_DAYS"])
    except (enrollments.EnrollmentError, LimitError) as exc:
        db.session.rollback()
        flash(f"Not resent: {exc}.", "error")
        return redirect(_here(e.contact_id))
    db.session.commit()
    queue.queue_send(row)
    flash(f"The magnet is queued for {row.to_address}, in the same thread as before.", "ok")
    return redirect(_here(e.contact_id))
