"""RQ jobs. Each takes ids only, is safe to run twice: claim, re-check, act, record."""

from __future__ import annotations

import logging
import os
import time
import traceback
from datetime import timedelta

from flask import Flask, current_app
from redis.exceptions import RedisError
from sqlalchemy import select

from service import (
    bounces,
    campaigns,
    contacts,
    create_app,
    digest,
    enrollments,
    intake,
    journey,
    mailboxes,
    metrics,
    outbound,
    queue,
    throttle,
)
from service.budget import BudgetExceeded, cpu_budget
from service.extensions import db
from service.mailer import SendError, Transport, compose, envelope_sender, to_bytes
from service.models import Campaign, Contact, InboundMessage, Outbound, utcnow
from service.queue import queue_inbound, queue_send

from .imap import copy_to_sent

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3


def _app() -> Flask:
    try:
        return current_app._get_current_object()
    except RuntimeError:
        return create_app()


def transport(settings: dict) -> Transport:
    """One SMTP connection per worker process (and app) and mailbox, reused across jobs; an edited
    mailbox gets a new one."""
    per_process = current_app.extensions.setdefault("ft_transport", {})
    key = (os.getpid(), settings.get("MAILBOX"), settings.get("MAILBOX_VERSION"))
    if key not in per_process:
        per_process[key] = Transport(settings)
    return per_process[key]


def _waiting(message_id: int) -> InboundMessage | None:
    """The message, locked for this transaction, if it still waits to be processed (§5.3: one worker acts)."""
    query = select(InboundMessage).where(InboundMessage.id == message_id).with_for_update()
    message = db.session.scalar(query)
    if message is None or message.processed_at is not None or message.state not in ("new", "backlog"):
        return None
    return message


def process_inbound(message_id: int) -> str:
    """Classify a stored message and act on it; the third failure quarantines it."""
    with journey(f"in#{message_id}"):
        result = _process_message(message_id)
        log.info("inbound: %s", result)
        return result


def _process_message(message_id: int) -> str:
    with _app().app_context():
        message = _waiting(message_id)
        if message is None:
            return "nothing to do"
        if message.attempts >= MAX_ATTEMPTS:  # earlier tries died with their worker (killed, out of memory)
            message.state, message.error = "quarantined", message.error or "the worker died while processing it"
            db.session.commit()
            metrics.INBOUND.labels("quarantined").inc()
            log.error("inbound #%s quarantined: it never finished processing", message_id)
            return "quarantined"
        settings, limit = current_app.config, current_app.config["MAX_MESSAGE_MB"]
        if message.size > limit * 1024 * 1024:
            return _set_aside(message_id, f"larger than MAX_MESSAGE_MB ({limit} MB): kept, not read")
        message.attempts += 1
        raw, role = message.raw, message.folder_role
        rules, who = campaigns.rules(db.session, message.mailbox_slug), intake.identity(settings, db.session)
        db.session.commit()  # the write lock is let go before the slow part: the poller must keep storing
        try:
            with cpu_budget(settings["INBOUND_CPU_SECONDS"]):
                understood = intake.understand(raw, role, rules, who)
        except BudgetExceeded:
            seconds = settings["INBOUND_CPU_SECONDS"]
            return _set_aside(message_id, f"reading it took more than {seconds:g} s of CPU (INBOUND_CPU_SECONDS)")
        except Exception:
            _record_failure(message_id)
            raise
        try:
            message = _waiting(message_id)
            if message is None:
                return "nothing to do"
            rows = intake.apply(db.session, message, understood, settings)
            db.session.commit()
        except Exception:
            db.session.rollback()
            _record_failure(message_id)
            raise
        metrics.INBOUND.labels(message.kind or "unknown").inc()
        for row in rows:
            queue_send(row)
        return f"{message.kind}: {len(rows)} to send"


def _set_aside(message_id: int, why: str) -> str:
    """Mail too big or too costly to read is quarantined at once, kept whole, so the next message goes on."""
    message = db.session.get(InboundMessage, message_id)
    message.state, message.error = "quarantined", why
    message.reasons = [*(message.reasons or []), why]
    db.session.commit()
    metrics.INBOUND.labels("quarantined").inc()
    log.error("inbound #%s quarantined: %s", message_id, why)
    return "quarantined"


def _record_failure(message_id: int) -> None:
    message = db.session.get(InboundMessage, message_id)
    message.error = traceback.format_exc()[-4000:]
    if message.attempts >= MAX_ATTEMPTS:
        message.state = "quarantined"
        log.error("inbound #%s quarantined after %s attempts", message_id, message.attempts)
    db.session.commit()
    if message.state == "quarantined":
        metrics.INBOUND.labels("quarantined").inc()
    else:  # the job raises, and RQ runs it again (service.queue.queue_inbound)
        metrics.RETRIES.labels("inbound").inc()


def send(row_id: int) -> str:
    """Send one ledger row, exactly once: claim, ask for the verdict, act, record."""
    with journey(f"out#{row_id}"):
        result = _send_row(row_id)
        log.info("send: %s", result)
        return result


def _send_row(row_id: int) -> str:
    with _app().app_context():
        session, settings = db.session, current_app.config
        row = _claim(session, row_id)
        if row is None:
            return _not_claimed(row_id)
        found, campaign, sending = enrollments.verdict(session, row, settings), None, settings
        if found.action == enrollments.GO:
            campaign = session.get(Campaign, row.campaign_id) if row.campaign_id else None  # a digest has none
            sending, found = _ready(session, row, campaign, settings, found)
        handler = {enrollments.CANCEL: _cancel, enrollments.SKIP: _skip, enrollments.WAIT: _wait}.get(found.action)
        if handler is not None:
            return handler(session, row, found, settings)
        return _deliver(session, row, campaign, sending)


def _ready(session, row: Outbound, campaign: Campaign | None, settings: dict,
           found: enrollments.Verdict) -> tuple[dict, enrollments.Verdict]:
    """The sending mailbox's settings, and whether its pace (and the deployment's) lets the row go now."""
    try:
        sending = mailboxes.settings_for(session, campaign.mailbox if campaign else mailboxes.DEFAULT, settings)
    except mailboxes.MailboxError as exc:  # removed, or its secrets unreadable: the row waits for the admin
        return settings, enrollments.Verdict(enrollments.WAIT, str(exc), utcnow() + timedelta(hours=1))
    return sending, _paced(row, sending) or found


# RQ schedules on whole seconds, and its scheduler looks once a second: a job may start a little before
# its row is due. Waiting that moment out beats handing it back (the re-queue would collide with itself).
EARLY_START_GRACE = timedelta(seconds=3)


def _claim(session, row_id: int) -> Outbound | None:
    row = outbound.claim(session, row_id)
    if row is not None:
        return row
    early = session.get(Outbound, row_id)
    wait = (early.due_at - utcnow()) if early is not None and early.state == outbound.PENDING else None
    session.rollback()
    if wait is None or wait > EARLY_START_GRACE:
        return None
    time.sleep(max(0.0, wait.total_seconds()))
    return outbound.claim(session, row_id)


def _cancel(session, row: Outbound, found: enrollments.Verdict, settings: dict) -> str:
    """A row that must not go (suppressed, sequence stopped)."""
    outbound.cancel(row, found.reason)
    contacts.record(session, _contact(session, row), "send_cancelled", found.reason, outbound_id=row.id)
    session.commit()
    metrics.SENDS.labels("cancelled").inc()
    return f"cancelled: {found.reason}"


def _skip(session, row: Outbound, found: enrollments.Verdict, settings: dict) -> str:
    """A follow-up that makes no sense now is skipped, and the sequence goes on."""
    nxt = enrollments.skip_and_go_on(session, row, found.reason, settings["MAIL_DOMAIN"])
    contacts.record(session, _contact(session, row), "send_skipped", found.reason, outbound_id=row.id)
    session.commit()
    metrics.SENDS.labels("skipped").inc()
    log.error("ledger row #%s %s", row.id, found.reason)
    if nxt is not None:
        queue_send(nxt)
    return found.reason


def _wait(session, row: Outbound, found: enrollments.Verdict, settings: dict) -> str:
    """Hand the row back to wait (paused campaign, window, breaker, pace) and queue it for then."""
    outbound.defer(row, found.until, found.reason)
    if found.reason.startswith("sending paused"):
        log.error("%s; ledger row #%s waits an hour", found.reason, row.id)
    session.commit()
    metrics.SENDS.labels("deferred").inc()
    queue_send(row)
    return f"deferred: {row.note}"


def _paced(row: Outbound, settings: dict) -> enrollments.Verdict | None:
    """The deployment's pace and the sending mailbox's, counted in Redis: over either, the row waits for
    its next slot. `settings` are the mailbox's (`mailboxes.settings_for`).

    Only a first-time requester's magnet may use the share of the day kept for them.
    """
    now = utcnow()
    wanted = throttle.budgets(settings, now, first_time=_first_magnet(db.session, row))
    refused = throttle.take(queue.connection(), wanted, now)
    if refused is None:
        return None
    return enrollments.Verdict(enrollments.WAIT, f"pace limit reached ({refused.reason})", refused.until)


def _first_magnet(session, row: Outbound) -> bool:
    """A magnet to someone who was never sent one (a repeat request or a fresh link is not a first)."""
    if row.kind != "magnet":
        return False
    if row.contact_id is None:
        return True
    earlier = select(Outbound.id).where(
        Outbound.contact_id == row.contact_id, Outbound.kind == "magnet", Outbound.state == outbound.SENT,
        Outbound.id != row.id,
    )
    return session.scalar(earlier.limit(1)) is None


def _contact(session, row: Outbound) -> Contact | None:
    return session.get(Contact, row.contact_id) if row.contact_id else None


def _not_claimed(row_id: int) -> str:
    row = db.session.get(Outbound, row_id)
    if row is not None and row.state == outbound.PENDING:
        queue_send(row)  # not due yet (postponed): wait for its new time
        return f"not due until {row.due_at.isoformat()}"
    return f"already {row.state if row else 'gone'}"


def _deliver(session, row: Outbound, campaign: Campaign | None, settings: dict) -> str:
    contact = session.get(Contact, row.contact_id) if row.contact_id else None
    try:
        raw = row.raw if row.kind == digest.KIND else _built(row, contact, campaign, settings)
    except Exception as exc:  # a template an admin broke: keep the row, show the error
        outbound.fail(row, f"could not build the message: {exc}")
        session.commit()
        metrics.SENDS.labels("failed").inc()
        return "failed: template"
    row.raw = raw
    row_id, sender, recipient = row.id, envelope_sender(row, settings), row.to_address
    name = f"{row.id}-{row.kind}"
    session.commit()  # Message-ID and bytes are on record before SMTP sees anything
    session.close()  # and no transaction (no SQLite write lock) is held while SMTP talks
    try:
        with metrics.SEND_SECONDS.time():  # the SMTP conversation alone, accepted or refused
            response = transport(settings).send(raw, sender, recipient, name)
    except SendError as exc:
        return _send_failed(session, row_id, exc, settings)
    row = session.get(Outbound, row_id)
    contact = session.get(Contact, row.contact_id) if row.contact_id else None
    outbound.mark_sent(row, response)
    contacts.record(session, contact, f"{row.kind}_sent", row.subject, outbound_id=row.id)
    nxt = enrollments.advance(session, row, settings["MAIL_DOMAIN"])
    session.commit()
    metrics.SENDS.labels("sent").inc()
    if row.kind != digest.KIND:  # the consultant's Sent folder shows what prospects got, not our note to them
        copy_to_sent(settings, raw)
    if nxt is not None:
        queue_send(nxt)
    return f"sent: {response}"


def _built(row: Outbound, contact: Contact | None, campaign: Campaign, settings: dict) -> bytes:
    step = next((s for s in campaign.steps if s.position == row.step_position), None)
    return to_bytes(compose(row, contact, campaign, step, settings), settings)


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
    metrics.SENDS.labels(_FAILED_OUTCOMES[row.state]).inc()
    if row.state == outbound.PENDING:
        metrics.RETRIES.labels("send").inc()
        queue_send(row)
    return f"{row.state}: {exc}"


# A refused or broken SMTP attempt, by what became of its row.
_FAILED_OUTCOMES = {outbound.PENDING: "retry", outbound.UNKNOWN: "unknown", outbound.FAILED: "failed"}


def _address_refused(session, row: Outbound, contact: Contact | None, reply: str) -> None:
    """A 5xx naming a bad address (RFC 3463 5.1.x user/host unknown) suppresses it and ends its sequences."""
    if not bounces.refused_address(reply):
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
        _count_catches(session, stuck)  # before the digest plans rows that never had a job
        digest.plan_due(session, settings)  # once a day per admin who wants one; queued with the rest below
        session.commit()
        due = outbound.due(session)
        waiting = session.scalars(db.select(InboundMessage.id).where(InboundMessage.state == "new")).all()
        queued = sum(queue_send(row) for row in due) + sum(queue_inbound(i) for i in waiting)
        return f"{len(stuck)} stuck, {queued} queued"


def _count_catches(session, stuck: list[Outbound]) -> None:
    """Count what only the database still knew of: rows left mid-send, and due work Redis had no job for."""
    metrics.CATCHES.labels("stuck").inc(len(stuck))
    held = _jobs_in_redis()
    if held is None:  # Redis is down: nothing to compare with, and the queueing after this logs it
        return
    due = outbound.due(session)
    waiting = session.scalars(select(InboundMessage.id).where(InboundMessage.state == "new")).all()
    metrics.CATCHES.labels("send").inc(sum(f"out-{row.id}" not in held for row in due))
    metrics.CATCHES.labels("inbound").inc(sum(f"in-{message_id}" not in held for message_id in waiting))


def _jobs_in_redis() -> set[str] | None:
    """Each row (`out-34`) and message (`in-12`) with a job waiting, scheduled or running, as service.queue
    names its jobs; None when Redis cannot say."""
    try:
        q = queue.queue()
        ids = [*q.job_ids, *q.scheduled_job_registry.get_job_ids(), *q.started_job_registry.get_job_ids(),
               *q.deferred_job_registry.get_job_ids()]
    except RedisError:
        return None
    return {"-".join(job_id.split("-")[:2]) for job_id in ids}
