"""Contacts: the searchable list, one contact's timeline, what an admin can do to them, and enrolling one
contact, a search result or an import in a campaign (a count to confirm, then batches)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from flask import Response, abort, current_app, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from .. import campaigns, contacts, enrollments, intake, queue, roster, stats
from ..extensions import db
from ..models import Campaign, Contact, Enrollment, utcnow
from ..outbound import LimitError
from . import back, bp, confirm, csvio
from .forms import ContactDetailsForm, TagsForm, details_data

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
        search=Selection.read(request.args).args(),
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
        details_form=ContactDetailsForm(data=details_data(contact.company, contact.fields or {})),
        plans=_plans(campaigns.all_campaigns(db.session)),
    )


@bp.post("/contacts/<int:contact_id>/details")
def contact_details(contact_id: int):
    contact, form = _contact(contact_id), ContactDetailsForm()
    try:
        if not form.validate_on_submit():
            raise ValueError("; ".join(_errors(form)) or "the form expired, try again")
        contacts.set_details(db.session, contact, form.company.data or "", form.pairs())
    except ValueError as exc:
        db.session.rollback()
        flash(f"Not saved: {exc}.", "error")
        return redirect(_here(contact_id))
    db.session.commit()
    flash(f"Saved: company {contact.company or '(none)'}, {len(contact.fields)} field(s).", "ok")
    return redirect(_here(contact_id))


def _errors(form) -> list[str]:
    """A form's errors, sub-forms' too, as one list of sentences."""
    found = []
    for name, errors in form.errors.items():
        for error in errors:
            found += _errors_in(name, error)
    return found


def _errors_in(name: str, error) -> list[str]:
    if isinstance(error, dict):  # a FieldList entry: its own fields' errors
        return [f"{key}: {e}" for key, errors in error.items() for e in errors]
    return [f"{name}: {error}"]


@bp.route("/contacts/<int:contact_id>/resubscribe", methods=["GET", "POST"])
def contact_resubscribe(contact_id: int):
    contact = _contact(contact_id)
    held = contacts.suppression(db.session, contact.email)
    if request.method == "GET":
        return confirm(f"Resubscribe {contact.email}?", f"The address was suppressed ({held.reason if held else '?'}"
                       "). Mail can go to it again: a request they send is answered, and you can enrol them. "
                       "Sequences that stopped stay stopped.", "Resubscribe", _here(contact_id))
    lifted = contacts.resubscribe(db.session, contact.email, f"by {current_user.email}")
    db.session.commit()
    flash(f"{contact.email} is resubscribed." if lifted else f"{contact.email} was not suppressed.", "ok")
    return redirect(_here(contact_id))


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


# --------------------------------------------------------------------------- enrolling a selection

ENROL_BATCH = 200  # people enrolled per request: each plans a mail, so a big selection reloads, never times out
TALLY_BATCH = 1000  # people counted per query round for the confirmation and the report
SEARCH_ARGS = ("q", "state", "campaign", "tag")
SKIP_LABELS = {enrollments.SUPPRESSED: "suppressed", enrollments.RECENT: "a magnet inside the repeat limit",
               enrollments.ENROLLED: "in the campaign already"}


@dataclass(frozen=True)
class Selection:
    """Whom an enrolment is for: one contact, the contacts the list's search finds, or those an import wrote."""

    contact: int | None = None
    imported: str | None = None  # an import's token
    search: tuple[tuple[str, str], ...] = ()  # the list's filters (none: every contact)

    @classmethod
    def read(cls, values) -> Selection:
        if values.get("contact", type=int):
            return cls(contact=values.get("contact", type=int))
        if values.get("import"):
            return cls(imported=values["import"])
        return cls(search=tuple((k, values[k][:200]) for k in SEARCH_ARGS if values.get(k)))

    @classmethod
    def restore(cls, kept: dict) -> Selection:
        """A selection as a run's token keeps it (see `kept`)."""
        return cls(kept.get("contact"), kept.get("imported"), tuple(tuple(pair) for pair in kept.get("search", ())))

    def kept(self) -> dict:
        return {"contact": self.contact, "imported": self.imported, "search": [list(p) for p in self.search]}

    def args(self) -> dict:
        """The selection as the query string of the confirmation and the list."""
        if self.contact:
            return {"contact": self.contact}
        return {"import": self.imported} if self.imported else dict(self.search)


def _people(selection: Selection, cursor: int, size: int, light: bool = False) -> tuple[list, int | None]:
    """The next `size` people of the selection after `cursor` (a contact id, or an import's byte offset),
    and the cursor after them (None: no more). `light`: id, email and name only, for counting."""
    if selection.imported:
        emails, more = csvio.imported(csvio.folder(current_app.instance_path), _import(selection), cursor, size)
        query = select(Contact).where(Contact.email.in_(emails))
    else:  # keyset on the id: one row past the batch says whether there is more
        query = _query(selection).where(Contact.id > cursor).limit(size + 1)
    query = query.order_by(Contact.id)
    people = list(db.session.execute(query.with_only_columns(Contact.id, Contact.email, Contact.name)) if light
                  else db.session.scalars(query))
    if not selection.imported:
        more = people[size - 1].id if len(people) > size else None
        people = people[:size]
    return people, more


def _query(selection: Selection):
    if selection.contact:
        return select(Contact).where(Contact.id == selection.contact)
    args = dict(selection.search)
    campaign = args.get("campaign", "")
    return roster.matching(roster.Filters(text=args.get("q", ""), state=args.get("state", ""), tag=args.get("tag", ""),
                                          campaign_id=int(campaign) if campaign.isdigit() else None))


def _import(selection: Selection) -> csvio.ImportState:
    return csvio.load(csvio.folder(current_app.instance_path), selection.imported) or abort(404)


def _everyone(selection: Selection) -> Iterator[list]:
    """The whole selection, a batch at a time, light rows only (bounded memory at any size)."""
    cursor: int | None = 0
    while cursor is not None:
        people, cursor = _people(selection, cursor, TALLY_BATCH, light=True)
        yield people


def _described(selection: Selection) -> str:
    if selection.contact:
        person = db.session.get(Contact, selection.contact) or abort(404)
        return person.name or person.email
    if selection.imported:
        return f"the contacts imported from {_import(selection).filename}"
    args = dict(selection.search)
    return f"the contacts matching “{args['q']}”" if args.get("q") else (
        "the contacts the list's filters show" if args else "every contact")


def _plans(known: list[Campaign]) -> list[tuple[str, str]]:
    """Where an admin may enrol people: every campaign at its magnet or at one of its follow-ups."""
    return [(f"{c.id}:{start or 0}", f"{c.name}{'' if c.active else ' (paused)'}: {label}")
            for c in known for start, label in enrollments.starts(c)]


def _plan(value: str) -> tuple[Campaign, int | None] | None:
    """The campaign and start a plan value names ("3:0" its magnet, "3:2" its follow-up 2), if it names one."""
    campaign_id, _, start = (value or "").partition(":")
    campaign = db.session.get(Campaign, int(campaign_id)) if campaign_id.isdigit() else None
    if campaign is None or not start.isdigit():
        return None
    at = int(start) or None
    return (campaign, at) if at is None or any(s.position == at for s in campaign.steps) else None


def _back(selection: Selection) -> str:
    if selection.contact:
        return _here(selection.contact)
    if selection.imported:
        return url_for("admin.import_run", token=selection.imported)
    return url_for("admin.contact_list", **dict(selection.search))


@bp.get("/enrol")
def enrol_confirm():
    """Whom, into what, and how many that mails, before anything is done."""
    selection, value = Selection.read(request.args), request.args.get("plan", "")
    plan = _plan(value)
    count = enrollments.tally(db.session, _everyone(selection), plan[0], current_app.config) if plan else None
    return render_template(
        "admin/contacts_enrol.html", selection=selection, who=_described(selection), plans=_plans(
            campaigns.all_campaigns(db.session)), value=value, plan=plan, count=count, labels=SKIP_LABELS,
        back=_back(selection), repeat_days=current_app.config["MAGNET_REPEAT_DAYS"], bad_plan=bool(value) and not plan,
    )


@bp.post("/enrol")
def enrol_start():
    selection, plan = Selection.read(request.form), _plan(request.form.get("plan", ""))
    if plan is None:
        flash("Choose a campaign and where to start.", "error")
        return redirect(url_for("admin.enrol_confirm", **selection.args()))
    run = {"selection": selection.kept(), "plan": request.form["plan"], "cursor": 0, "done": 0,
           "since": utcnow().isoformat(), "expected": request.form.get("expected", type=int) or 0}
    return redirect(url_for("admin.enrol_run", token=_sign(run)))


@bp.get("/enrol/run/<token>")
def enrol_run(token: str):
    """Enrols the next batch and shows progress, reloading itself to the next batch until done; then the report.

    A GET that writes: its token is signed, and only the CSRF-checked POST above issues one; running a batch
    twice (a reload) enrols nobody twice, since a person already in the campaign is skipped.
    """
    run = _read(token)
    selection, (campaign, start) = Selection.restore(run["selection"]), _plan(run["plan"]) or abort(404)
    if run["cursor"] is None:
        since = datetime.fromisoformat(run["since"])
        report = enrollments.tally(db.session, _everyone(selection), campaign, current_app.config, since=since)
        return render_template("admin/contacts_enrol_run.html", run=run, campaign=campaign, start=start,
                               who=_described(selection), report=report, labels=SKIP_LABELS, back=_back(selection))
    people, run["cursor"] = _people(selection, run["cursor"], ENROL_BATCH)
    outcomes = enrollments.enrol_many(db.session, people, campaign, start, current_app.config, current_user.email)
    db.session.commit()
    for outcome in outcomes:
        if outcome.row is not None:
            queue.queue_send(outcome.row)
    run["done"] += len(people)
    return render_template("admin/contacts_enrol_run.html", run=run, campaign=campaign, start=start,
                           who=_described(selection), next=url_for("admin.enrol_run", token=_sign(run)))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="follow-through:enrol-run")


def _sign(run: dict) -> str:
    return _serializer().dumps(run)


def _read(token: str) -> dict:
    """A run's state from its token: only this server signs them, after the confirmed POST; a day at most."""
    try:
        return _serializer().loads(token, max_age=86400)
    except BadSignature:
        abort(404)
