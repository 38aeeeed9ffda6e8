"""RQ jobs. Each takes ids only, is safe to run twice: claim, re-check, act, record."""

from __future__ import annotations

import logging
import os
import re
import traceback
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import select

from service import contacts, create_app, enrollments, intake, outbound, queue, throttle
from service.bounces import is_permanent
from service.campaigns import next_open
from service.extensions import db
from service.mailer import SendError, Transport, compose, envelope_sender, to_bytes
from service.models import Campaign, Contact, Enrollment, InboundMessage, Outbound, utcnow
from service.queue import queue_inbound, queue_send

from .imap import copy_to_sent

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def _app() -> Flask:
    try:
        return current_app._get_current_object()
    except RuntimeError:
        return create_app()


def transport(settings: dict) -> Transport:
    """One SMTP connection per worker process (and app), reused across jobs."""
    per_process = current_app.extensions.setdefault("ft_transport", {})
    if os.getpid() not in per_process:
        per_process[os.getpid()] = Transport(settings)
    return per_process[os.getpid()]


def _waiting(message_id: int) -> InboundMessage | None:
    """The message, locked for this transaction, if it still waits to be processed (§5.3: one worker acts)."""
    query = select(InboundMessage).where(InboundMessage.id == message_id).with_for_update()
    message = db.session.scalar(query)
    if message is None or message.processed_at is not None or message.state not in ("new", "backlog"):
        return None
    return message


def process_inbound(message_id: int) -> str:
    """Classify a stored message and act on it; the third failure quarantines it."""
    with _app().app_context():
        message = _waiting(message_id)
        if message is None:
            return "nothing to do"
        if message.attempts >= MAX_ATTEMPTS:  # earlier tries died with their worker (killed, out of memory)
            message.state, message.error = "quarantined", message.error or "the worker died while processing it"
            db.session.commit()
            log.error("inbound #%s quarantined: it never finished processing", message_id)
            return "quarantined"
        message.attempts += 1
        db.session.commit()
        try:
            message = _waiting(message_id)
            if message is None:
                return "nothing to do"
            rows = intake.process(db.session, message, current_app.config)
            db.session.commit()
        except Exception:
            db.session.rollback()
            _record_failure(message_id)
            raise
        for row in rows:
            queue_send(row)
        return f"{message.kind}: {len(rows)} to send"


def _record_failure(message_id: int) -> None:
    message = db.session.get(InboundMessage, message_id)
    message.error = traceback.format_exc()[-4000:]
    if message.attempts >= MAX_ATTEMPTS:
        message.state = "quarantined"
        log.error("inbound #%s quarantined after %s attempts", message_id, message.attempts)
    db.session.commit()


def send(row_id: int) -> str:
    """Send one ledger row, exactly once: claim, re-check, act, record."""
    with _app().app_context():
        session, settings = db.session, current_app.config
        row = outbound.claim(session, row_id)
        if row is None:
            return _not_claimed(row_id)
        campaign = session.get(Campaign, row.campaign_id)
        verdict = _stopped(session, row, campaign, settings) or _held(row, campaign, settings)
        if verdict:
            return verdict
        return _deliver(session, row, campaign, settings)


def _stopped(session, row: Outbound, campaign: Campaign, settings: dict) -> str | None:
    """Cancel a row that must not go (suppressed, sequence stopped), or skip one that makes no sense now."""
    contact = session.get(Contact, row.contact_id) if row.contact_id else None
    reason = outbound.stop_reason(session, row)
    if reason:
        outbound.cancel(row, reason)
        contacts.record(session, contact, "send_cancelled", reason, outbound_id=row.id)
        session.commit()
        return f"cancelled: {reason}"
    step_gone = row.kind == "followup" and not any(s.position == row.step_position for s in campaign.steps)
    skipped = outbound.stale(row, settings["STALE_FOLLOWUP_HOURS"]) or (
        step_gone and f"skipped: follow-up {row.step_position} no longer exists in {campaign.name}"
    )
    if not skipped:
        return None
    nxt = outbound.skip_and_go_on(session, row, skipped, settings["MAIL_DOMAIN"])
    contacts.record(session, contact, "send_skipped", skipped, outbound_id=row.id)
    session.commit()
    log.error("ledger row #%s %s", row.id, skipped)
    if nxt is not None:
        queue_send(nxt)
    return skipped


def _held(row: Outbound, campaign: Campaign, settings: dict) -> str | None:
    """Hand the row back to wait (paused campaign, window, breaker, pace) and queue it for then."""
    if outbound.paused_campaign(db.session, row):
        outbound.defer(row, utcnow() + timedelta(hours=1), "campaign paused: waiting for it to be active again")
    elif not _must_wait(row, campaign, settings):
        return None
    db.session.commit()
    queue_send(row)
    return f"deferred: {row.note}"


def _not_claimed(row_id: int) -> str:
    row = db.session.get(Outbound, row_id)
    if row is not None and row.state == outbound.PENDING:
        queue_send(row)  # not due yet (postponed): wait for its new time
        return f"not due until {row.due_at.isoformat()}"
    return f"already {row.state if row else 'gone'}"


def _must_wait(row: Outbound, campaign: Campaign, settings: dict) -> bool:
    """Follow-ups keep to the sending window; every send keeps to the deployment-wide pace."""
    now = utcnow()
    if row.kind == "followup" or (row.kind == "magnet" and settings["MAGNET_IN_WINDOW"]):
        opens = next_open(now, campaign.window, campaign.timezone)
        if opens > now + timedelta(seconds=1):
            outbound.defer(row, opens, f"waiting for the sending window ({campaign.window}, {campaign.timezone})")
            return True
    tripped = outbound.breaker(db.session, settings, now) if row.kind != "test" else None
    if tripped:
        log.error("%s; ledger row #%s waits an hour", tripped, row.id)
        outbound.defer(row, now + timedelta(hours=1), tripped)
        return True
    later = throttle.take_slot(queue.connection(), settings["SEND_PER_MINUTE"], settings["SEND_PER_DAY"], now)
    if later:
        outbound.defer(row, later, "pace limit reached (SEND_PER_MINUTE / SEND_PER_DAY)")
        return True
    return False


def _deliver(session, row: Outbound, campaign: Campaign, settings: dict) -> str:
    contact = session.get(Contact, row.contact_id) if row.contact_id else None
    step = next((s for s in campaign.steps if s.position == row.step_position), None)
    try:
        raw = to_bytes(compose(row, contact, campaign, step, settings), settings)
    except Exception as exc:  # a template an admin broke: keep the row, show the error
        outbound.fail(row, f"could not build the message: {exc}")
        session.commit()
        return "failed: template"
    row.raw = raw
    row_id, sender, recipient = row.id, envelope_sender(row, settings), row.to_address
    name = f"{row.id}-{row.kind}"
    session.commit()  # Message-ID and bytes are on record before SMTP sees anything
    session.close()  # and no transaction (no SQLite write lock) is held while SMTP talks
    try:
        response = transport(settings).send(raw, sender, recipient, name)
    except SendError as exc:
        return _send_failed(session, row_id, exc, settings)
    row = session.get(Outbound, row_id)
    contact = session.get(Contact, row.contact_id) if row.contact_id else None
    outbound.mark_sent(row, response)
    contacts.record(session, contact, f"{row.kind}_sent", row.subject, outbound_id=row.id)
    nxt = _advance(session, row, settings)
    session.commit()
    copy_to_sent(settings, raw)
    if nxt is not None:
        queue_send(nxt)
    return f"sent: {response}"


def _advance(session, row: Outbound, settings: dict) -> Outbound | None:
    enrollment = session.get(Enrollment, row.enrollment_id) if row.enrollment_id else None
    if enrollment is None:
        return None
    if row.kind == "followup":
        enrollment.steps_sent = row.step_position
    if enrollment.state != "active":
        return None
    return outbound.plan_next_step(session, enrollment, row, settings["MAIL_DOMAIN"])


def _send_failed(session, row_id: int, exc: SendError, settings: dict) -> str:
    row = session.get(Outbound, row_id)
    log.warning("send #%s to %s failed: %s", row.id, row.to_address, exc)
    contact = session.get(Contact, row.contact_id) if row.contact_id else None
    if exc.uncertain:
        outbound.mark_unknown(row, str(exc))
        contacts.record(session, contact, "send_unknown", str(exc), outbound_id=row.id)
    elif exc.permanent:
        outbound.fail(row, str(exc))
        contacts.record(session, contact, "send_failed", str(exc), outbound_id=row.id)
        _address_refused(session, row, contact, str(exc))
    elif outbound.retry_later(row, str(exc), settings["SEND_RETRIES"], settings["SEND_RETRY_BASE_SECONDS"]):
        contacts.record(session, contact, "send_deferred", str(exc), outbound_id=row.id)
    else:
        gave_up = f"gave up after {row.attempts} tries: {exc}"
        contacts.record(session, contact, "send_failed", gave_up, outbound_id=row.id)
    session.commit()
    if row.state == outbound.PENDING:
        queue_send(row)
    return f"{row.state}: {exc}"


def _address_refused(session, row: Outbound, contact: Contact | None, reply: str) -> None:
    """A 5xx naming a bad address (RFC 3463 5.1.x user/host unknown) suppresses it and ends its sequences."""
    status = ENHANCED_STATUS.search(reply)
    if not is_permanent("failed", status[1] if status else None, reply):
        return
    contacts.suppress(session, row.to_address, "bounced", reply)
    contacts.record(session, contact, "bounce_hard", f"refused at send: {reply}", outbound_id=row.id)
    if contact is not None:
        enrollments.stop_all(session, contact, enrollments.BOUNCED, f"the server refused the address: {reply}")


def reconcile() -> str:
    """Queue again whatever the database says is due or stuck (Redis may have lost it)."""
    with _app().app_context():
        session, settings = db.session, current_app.config
        stuck = outbound.expire_stuck(session, timedelta(seconds=settings["STUCK_AFTER_SECONDS"]))
        for row in stuck:
            log.error("ledger row #%s was left mid-send; marked unknown", row.id)
        session.commit()
        due = outbound.due(session)
        waiting = session.scalars(db.select(InboundMessage.id).where(InboundMessage.state == "new")).all()
        queued = sum(queue_send(row) for row in due) + sum(queue_inbound(i) for i in waiting)
        return f"{len(stuck)} stuck, {queued} queued"
