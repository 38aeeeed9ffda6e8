"""The sequence's one owner: enrollments plans, resumes, skips and stops; the send job asks it for a verdict."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from service import ROOT, campaigns, contacts, enrollments, outbound
from service.enrollments import ACTIVE, BOUNCED, COMPLETED, HALTED, PAUSED, REPLIED, UNSUBSCRIBED
from service.extensions import db
from service.models import Enrollment, Event, Outbound, utcnow

DOMAIN = "acumen.example"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, imported inside a function?) for every `from . import` / `from .x import` in a file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            found += [(name, id(node) not in top) for name in names]
    return found


def test_imports_run_one_way_from_enrollments_to_outbound_with_no_late_imports():
    ledger = _imports(ROOT / "service" / "outbound.py")
    sequence = _imports(ROOT / "service" / "enrollments.py")
    assert "enrollments" not in {name for name, _ in ledger}
    assert "outbound" in {name for name, _ in sequence}
    assert not [name for name, late in ledger + sequence if late]


def _enrolled(app, state: str = ACTIVE) -> int:
    with app.app_context():
        contact = contacts.upsert(db.session, "dana@prospect.example", "Dana")
        enrollment, _ = enrollments.enroll(db.session, contact, campaigns.by_slug(db.session, "execution-roadmap"))
        enrollment.state = state
        db.session.commit()
        return enrollment.id


def _followup(app, enrollment_id: int, **fields) -> int:
    with app.app_context():
        enrollment = db.session.get(Enrollment, enrollment_id)
        row = outbound.plan(
            db.session, f"step:{enrollment_id}:1", "followup", enrollment.contact.email, DOMAIN, "Re: Roadmap",
            contact_id=enrollment.contact_id, enrollment_id=enrollment_id, campaign_id=enrollment.campaign_id,
            step_position=1,
        )
        for name, value in fields.items():
            setattr(row, name, value)
        db.session.commit()
        return row.id


def _verdict(app, row_id: int, **settings) -> enrollments.Verdict:
    with app.app_context():
        row = db.session.get(Outbound, row_id)
        return enrollments.verdict(db.session, row, {**app.config, **settings})


def test_a_due_follow_up_of_an_active_sequence_may_go(world):
    assert _verdict(world, _followup(world, _enrolled(world))) == enrollments.Verdict(enrollments.GO)


def test_a_suppressed_address_or_a_stopped_sequence_cancels(world):
    stopped = _followup(world, _enrolled(world, REPLIED))
    assert _verdict(world, stopped) == enrollments.Verdict(enrollments.CANCEL, "enrollment is replied")
    with world.app_context():
        contacts.suppress(db.session, "dana+news@prospect.example", "unsubscribed")
        db.session.commit()
    # Suppressing the plain address also covers its +tag forms, and the other way round.
    with world.app_context():
        assert contacts.is_suppressed(db.session, "dana@prospect.example") is False
        assert contacts.is_suppressed(db.session, "dana+news@prospect.example") is True
        contacts.suppress(db.session, "dana@prospect.example", "unsubscribed")
        db.session.commit()
        assert contacts.is_suppressed(db.session, "dana+work@prospect.example") is True
    assert _verdict(world, stopped).reason == "address is suppressed"


def test_a_very_late_follow_up_or_one_whose_step_is_gone_is_skipped(world):
    enrollment_id = _enrolled(world)
    row_id = _followup(world, enrollment_id, due_at=utcnow() - timedelta(hours=50))
    found = _verdict(world, row_id, STALE_FOLLOWUP_HOURS=48)
    assert found.action == enrollments.SKIP and "50 h late" in found.reason
    with world.app_context():
        row = db.session.get(Outbound, row_id)
        row.step_position, row.due_at = 9, utcnow()
        db.session.commit()
    found = _verdict(world, row_id)
    assert found.action == enrollments.SKIP and "follow-up 9 no longer exists" in found.reason


def test_a_paused_campaign_a_closed_window_and_the_breaker_make_it_wait(world):
    row_id = _followup(world, _enrolled(world))
    with world.app_context():
        campaign = campaigns.by_slug(db.session, "execution-roadmap")
        campaign.active = False
        db.session.commit()
    found = _verdict(world, row_id)
    assert found.action == enrollments.WAIT and "campaign paused" in found.reason and found.until > utcnow()
    with world.app_context():
        campaign = campaigns.by_slug(db.session, "execution-roadmap")
        campaign.active, campaign.window, campaign.timezone = True, "sun-sun 00:00-00:01", "Pacific/Kiritimati"
        db.session.commit()
    found = _verdict(world, row_id)
    assert found.action == enrollments.WAIT and "sending window" in found.reason
    assert found.until > utcnow() + timedelta(minutes=1)
    with world.app_context():
        campaigns.by_slug(db.session, "execution-roadmap").window = None
        db.session.add(Outbound(key="x", kind="magnet", to_address="z@x.example", message_id="m@x", state="sent",
                                sent_at=utcnow()))
        db.session.add(Event(kind="bounce_hard", detail="test"))
        db.session.commit()
    found = _verdict(world, row_id, BREAKER_MIN_SENDS=1, BREAKER_BOUNCE_PERCENT=5)
    assert found.action == enrollments.WAIT and found.reason.startswith("sending paused: 1 hard bounces")


# Every move the state machine allows, and a sample of those it refuses.
ALLOWED = [
    (ACTIVE, PAUSED), (PAUSED, ACTIVE), (ACTIVE, REPLIED), (PAUSED, REPLIED), (ACTIVE, HALTED), (PAUSED, HALTED),
    (ACTIVE, COMPLETED), *((s, UNSUBSCRIBED) for s in (ACTIVE, PAUSED, REPLIED, COMPLETED, HALTED)),
    *((s, BOUNCED) for s in (ACTIVE, PAUSED, REPLIED, COMPLETED, HALTED)),
]
REFUSED = [(REPLIED, ACTIVE), (UNSUBSCRIBED, ACTIVE), (BOUNCED, ACTIVE), (COMPLETED, ACTIVE), (HALTED, ACTIVE),
           (UNSUBSCRIBED, REPLIED), (COMPLETED, PAUSED), (REPLIED, HALTED), (BOUNCED, UNSUBSCRIBED)]


@pytest.mark.parametrize(("start", "goal"), ALLOWED + REFUSED)
def test_the_state_machine_allows_exactly_its_moves(world, start, goal):
    enrollment_id = _enrolled(world, start)
    with world.app_context():
        enrollment = db.session.get(Enrollment, enrollment_id)
        moved = enrollments.move(db.session, enrollment, goal, "test")
        assert moved is ((start, goal) in ALLOWED)
        assert enrollment.state == (goal if moved else start)


@pytest.mark.parametrize("goal", [REPLIED, UNSUBSCRIBED, BOUNCED, HALTED])
def test_undoing_a_messages_move_returns_to_the_state_it_left_and_plans_the_next_step(world, goal):
    enrollment_id = _enrolled(world)
    with world.app_context():
        enrollment = db.session.get(Enrollment, enrollment_id)
        magnet = outbound.plan(db.session, "reply:x", "magnet", "dana@prospect.example", DOMAIN, "Re: Roadmap",
                               contact_id=enrollment.contact_id, enrollment_id=enrollment.id,
                               campaign_id=enrollment.campaign_id)
        outbound.mark_sent(magnet, "250 ok")
        assert enrollments.move(db.session, enrollment, goal, "test", cause=41)
        assert enrollments.undo(db.session, 40, DOMAIN) == [] and enrollment.state == goal  # another message's
        [row] = enrollments.undo(db.session, 41, DOMAIN)
        assert enrollment.state == ACTIVE and row.key == f"step:{enrollment.id}:1"
        assert row.in_reply_to == magnet.message_id and row.state == outbound.PENDING


def test_undo_keeps_a_later_messages_move_and_restores_a_paused_or_replied_state(world):
    enrollment_id = _enrolled(world, PAUSED)
    with world.app_context():
        enrollment = db.session.get(Enrollment, enrollment_id)
        enrollments.move(db.session, enrollment, REPLIED, "a reply", cause=1)
        enrollments.move(db.session, enrollment, BOUNCED, "a bounce", cause=2)
        assert enrollments.undo(db.session, 1, DOMAIN) == [] and enrollment.state == BOUNCED  # the bounce stays
        assert enrollments.undo(db.session, 2, DOMAIN) == [] and enrollment.state == REPLIED  # not active


def test_references_keep_the_first_and_the_latest_ids_of_a_long_thread():
    chain = [f"m{n}@x.example" for n in range(30)]
    kept = outbound.references(chain).split()
    assert len(kept) == outbound.REFERENCES_KEPT
    assert kept[0] == "<m0@x.example>" and kept[-1] == "<m29@x.example>" and "<m1@x.example>" not in kept


def test_steps_sent_is_counted_by_the_sequence_when_a_follow_up_goes(world):
    enrollment_id = _enrolled(world)
    row_id = _followup(world, enrollment_id)
    with world.app_context():
        row = db.session.get(Outbound, row_id)
        outbound.mark_sent(row, "250 ok")
        nxt = enrollments.advance(db.session, row, DOMAIN)
        enrollment = db.session.get(Enrollment, enrollment_id)
        assert enrollment.steps_sent == 1
        assert nxt is not None and nxt.step_position == 2 and nxt.in_reply_to == row.message_id
        assert db.session.scalar(select(Outbound.id).where(Outbound.key == f"step:{enrollment_id}:2")) == nxt.id
