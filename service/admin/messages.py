"""Single messages, in and out, and the ledger of sends: headers, text, and HTML in a sandbox."""

from __future__ import annotations

from flask import abort, make_response, render_template, request

from .. import campaigns, stats
from ..extensions import db
from ..models import Contact, InboundMessage, Outbound
from . import bp, framed, mailview
from .forms import ReplyFromForm


@bp.get("/sends")
def send_list():
    state = request.args.get("state", "")
    rows = stats.sends(db.session, state, before=request.args.get("before", type=int))
    return render_template("admin/sends.html", rows=rows, current=state, states=stats.SEND_FILTERS, size=50)


@bp.get("/inbound/<int:message_id>")
def inbound_page(message_id: int):
    message = db.session.get(InboundMessage, message_id) or abort(404)
    contact = db.session.get(Contact, message.contact_id) if message.contact_id else None
    return render_template(
        "admin/inbound.html", m=message, view=mailview.read(message.raw), contact=contact,
        campaigns=campaigns.all_campaigns(db.session), reply_form=ReplyFromForm(),
    )


@bp.get("/inbound/<int:message_id>/body")
def inbound_body(message_id: int):
    message = db.session.get(InboundMessage, message_id) or abort(404)
    return _frame(mailview.read(message.raw))


@bp.get("/outbound/<int:row_id>")
def outbound_page(row_id: int):
    row = db.session.get(Outbound, row_id) or abort(404)
    contact = db.session.get(Contact, row.contact_id) if row.contact_id else None
    return render_template("admin/outbound.html", r=row, view=mailview.read(row.raw), contact=contact)


@bp.get("/outbound/<int:row_id>/body")
def outbound_body(row_id: int):
    row = db.session.get(Outbound, row_id) or abort(404)
    return _frame(mailview.read(row.raw))


def _frame(view: mailview.MailView):
    """The sanitised HTML as its own document, for a sandboxed iframe."""
    return framed(make_response(render_template("admin/mail_frame.html", view=view)))
