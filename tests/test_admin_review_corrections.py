"""Review's decisions: "asked again" and "may be a request for X" one click from the magnet, and the corrections
for unsubscribes and bounces, each reaching intake.correct with the admin's name.

The rows are built as intake leaves them (`held`), so these tests pin the page and the POST, not the classifier.
"""

from __future__ import annotations

import re

from sqlalchemy import select, update

from service import contacts
from service.extensions import db
from service.models import Contact, Enrollment, Event, Outbound, utcnow
from tests.test_admin_support import held, inbound, post, receive, review_card, signed_in, text
from tests.world import dsn, mail

ROADMAP = "execution-roadmap"
AGAIN = dict(subject="Re: Roadmap please", body="Hi Ken, could you send it again? I lost it. Bob")
MAYBE_REASONS = [
    "may be a request for Execution Success Roadmap: asks ('do you have') for 'roadmap', which may be something else",
    "names 'roadmap' in body (campaign execution-roadmap)",
]
DANA = dict(sender="Dana Dee <dana@prospect.example>", to="ken@acumen.example", subject="your roadmap",
            body="Do you have a roadmap for teams like mine?")


def _bob_got_the_magnet(app) -> Contact:
    receive(app, mail())
    with app.app_context():
        db.session.execute(update(Outbound).values(state="sent", sent_at=utcnow()))
        db.session.commit()
        return contacts.find(db.session, "bob@prospect.example")


def _asked_again(app, bob: Contact) -> int:
    """bob answers our magnet's thread asking for it again; intake held it (a magnet went out inside the limit)."""
    with app.app_context():
        ours = f"<{db.session.scalar(select(Outbound.message_id).where(Outbound.kind == 'magnet'))}>"
    return held(app, mail(**AGAIN, In_Reply_To=ours, References=ours), kind="request", campaign_slug=ROADMAP,
                contact_id=bob.id, from_address=bob.email, subject=AGAIN["subject"], new_text=AGAIN["body"],
                reasons=["asks for the magnet again: asks for it again: 'send it again'",
                         "asked again: repeat request within 7 days: no second magnet"])


def _maybe(app, contact: Contact | None = None, **message) -> int:
    fields = {**DANA, **message}
    return held(app, mail(**fields), kind="human", campaign_slug=ROADMAP, reasons=MAYBE_REASONS,
                contact_id=contact.id if contact else None, from_address=re.search(r"<(.+)>", fields["sender"])[1],
                subject=fields["subject"], new_text=fields["body"])


def _forms(card: str) -> list[str]:
    return re.findall(r"<form .*?</form>", card, re.S)


def _form_with(card: str, label: str) -> str:
    """The form whose button says `label`."""
    return next(f for f in _forms(card) if re.search(rf">\s*{re.escape(label)}\s*</button>", f))


def _magnets(app) -> list[Outbound]:
    with app.app_context():
        rows = list(db.session.scalars(select(Outbound).where(Outbound.kind == "magnet").order_by(Outbound.id)))
        db.session.expunge_all()
        return rows


def _corrections(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Event.detail).where(Event.kind == "correction").order_by(Event.id)))


# --------------------------------------------------------------------------- asked again


def test_an_asked_again_item_says_asked_again_and_never_calls_it_a_reply(world):
    bob = _bob_got_the_magnet(world)
    message_id = _asked_again(world, bob)
    card = review_card(text(signed_in(world).get("/admin/review")), message_id)
    assert '<span class="state state-asked-again">asked again</span>' in card
    assert re.search(r"Bob Prospect</a> asked again</strong> for Execution Success Roadmap\. A magnet already went "
                     r"to them in the last 7 days, so nothing was sent\.", card)
    decision = card.split("<details")[0]
    assert "reply" not in decision.lower() and "classified as" not in decision
    send = _form_with(decision, "Send the magnet again")
    assert f'action="/admin/inbound/{message_id}/correct"' in send
    assert '<input type="hidden" name="campaign" value="execution-roadmap">' in send
    assert 'name="kind" value="request"' in send and 'name="csrf_token"' in send
    assert f'action="/admin/inbound/{message_id}/dismiss"' in _form_with(decision, "Nothing to do")


def test_send_the_magnet_again_sends_it_inside_the_limit_because_the_consultant_decided(world):
    bob = _bob_got_the_magnet(world)
    message_id = _asked_again(world, bob)
    response = post(signed_in(world), f"/admin/inbound/{message_id}/correct",
                    {"kind": "request", "campaign": ROADMAP, "next": "/admin/review"}, follow_redirects=True)
    assert f"Message #{message_id} is now treated as a request. 1 mail queued." in text(response)
    first, again = _magnets(world)
    assert (again.inbound_id, again.to_address, again.state) == (message_id, "bob@prospect.example", "pending")
    assert first.message_id in again.references  # the same thread as the first magnet
    assert _corrections(world) == ["request → request by alice@acumen.example"]
    assert inbound(world, message_id).state == "processed"
    assert f"/admin/inbound/{message_id}\"" not in text(signed_in(world).get("/admin/review"))


# --------------------------------------------------------------------------- may be a request


def test_a_maybe_item_shows_what_it_may_be_and_a_send_button(world):
    message_id = _maybe(world)
    card = review_card(text(signed_in(world).get("/admin/review")), message_id)
    assert '<span class="state state-maybe">may be a request</span>' in card
    assert "may be a request for Execution Success Roadmap</strong>" in card
    assert "asks (&#39;do you have&#39;) for &#39;roadmap&#39;, which may be something else" in card  # the reason
    decision = card.split("<details")[0]
    send = _form_with(decision, "Send Execution Success Roadmap")
    assert '<input type="hidden" name="campaign" value="execution-roadmap">' in send
    assert 'name="kind" value="request"' in send
    # dana is nobody's contact: "just a person" means there is nothing to do
    assert f'action="/admin/inbound/{message_id}/dismiss"' in _form_with(decision, "Just a person")


def test_send_from_a_maybe_item_mails_the_magnet_to_the_sender(world):
    message_id = _maybe(world)
    response = post(signed_in(world), f"/admin/inbound/{message_id}/correct", {"kind": "request", "campaign": ROADMAP},
                    follow_redirects=True)
    assert f"Message #{message_id} is now treated as a request. 1 mail queued." in text(response)
    [magnet] = _magnets(world)
    assert (magnet.to_address, magnet.inbound_id) == ("dana@prospect.example", message_id)
    assert inbound(world, message_id).kind == "request"


def test_just_a_person_from_a_contact_is_their_mail(world):
    bob = _bob_got_the_magnet(world)
    message_id = _maybe(world, bob, sender="Bob Prospect <bob@prospect.example>")
    card = review_card(text(signed_in(world).get("/admin/review")), message_id)
    person = _form_with(card.split("<details")[0], "Just a person")
    assert f'action="/admin/inbound/{message_id}/correct"' in person and 'name="kind" value="human"' in person
    response = post(signed_in(world), f"/admin/inbound/{message_id}/correct", {"kind": "human"}, follow_redirects=True)
    assert f"Message #{message_id} is now treated as a person&#39;s reply." in text(response)
    with world.app_context():
        assert contacts.find(db.session, "bob@prospect.example").hot
    assert _corrections(world) == ["human → human by alice@acumen.example"]


def test_just_a_person_needs_a_contact(world):
    message_id = _maybe(world)
    response = post(signed_in(world), f"/admin/inbound/{message_id}/correct", {"kind": "human"}, follow_redirects=True)
    assert "Not corrected: say whose mail this is: the sender is not one of your contacts." in text(response)
    assert inbound(world, message_id).state == "review"


# --------------------------------------------------------------------------- unsubscribe and bounces


def test_every_item_offers_unsubscribe_and_bounces_with_an_optional_address(world):
    message_id = receive(world, mail(**DANA))
    card = review_card(text(signed_in(world).get("/admin/review")), message_id)
    about = _form_with(card, "This is an unsubscribe")
    for kind, label in (("unsubscribe", "This is an unsubscribe"), ("bounce_hard", "This is a bounce (hard)"),
                        ("bounce_soft", "This is a bounce (soft)")):
        assert re.search(rf'name="kind" value="{kind}"[^>]*>{re.escape(label)}</button>', about)
    assert re.search(r'<input type="email" id="about-\d+" name="email"', about) and " required" not in about
    assert "Not a bounce" not in card  # only for mail the desk took for a bounce


def test_a_maybe_item_keeps_the_other_corrections_one_click_away(world):
    message_id = _maybe(world)
    card = review_card(text(signed_in(world).get("/admin/review")), message_id)
    folded = card.split("<details", 1)[1]
    assert "Something else? Other corrections" in folded
    for label in ("This is a request", "This is their reply", "This was an auto-reply", "This is an unsubscribe",
                  "This is a bounce (hard)", "This is a bounce (soft)"):
        assert label in folded, label


def test_not_a_bounce_is_offered_for_bounces_and_complaints_on_the_message_page(world):
    bounce = receive(world, dsn([("bob@prospect.example", "5.1.1", "failed")]))
    page = text(signed_in(world).get(f"/admin/inbound/{bounce}"))
    assert re.search(r'name="kind" value="not_bounce"[^>]*>Not a bounce</button>', page)
    assert "This is a bounce (hard)" in page
    complaint = held(world, mail(**DANA), kind="complaint", state="processed")
    page = text(signed_in(world).get(f"/admin/inbound/{complaint}"))
    assert re.search(r'name="kind" value="not_bounce"[^>]*>Not a spam complaint</button>', page)


def test_this_is_an_unsubscribe_suppresses_the_sender_and_stops_their_sequence(world):
    # Depends on intake.correct("unsubscribe"): suppress the person the message is from.
    bob = _bob_got_the_magnet(world)
    message_id = held(world, mail(sender="Bob Prospect <bob@prospect.example>", subject="stop", body="No more."),
                      kind="human", contact_id=bob.id, from_address=bob.email)
    response = post(signed_in(world), f"/admin/inbound/{message_id}/correct", {"kind": "unsubscribe", "email": ""},
                    follow_redirects=True)
    assert f"Message #{message_id} is now treated as an unsubscribe." in text(response)
    with world.app_context():
        assert contacts.is_suppressed(db.session, "bob@prospect.example")
        assert db.session.scalar(select(Enrollment.state)) == "unsubscribed"
    assert _corrections(world) == ["human → unsubscribe by alice@acumen.example"]


def test_a_hard_bounce_for_a_named_contact_then_not_a_bounce_lifts_it_again(world):
    # Depends on intake.correct("bounce_hard" with a contact, then "not_bounce" undoing it).
    bob = _bob_got_the_magnet(world)
    message_id = held(world, mail(sender="Mail System <postmaster@relay.example>", subject="failure notice",
                                  body="Your message could not be delivered."), kind="human")
    client = signed_in(world)
    response = post(client, f"/admin/inbound/{message_id}/correct",
                    {"kind": "bounce_hard", "email": "bob@prospect.example"}, follow_redirects=True)
    assert f"Message #{message_id} is now treated as a hard bounce." in text(response)
    with world.app_context():
        assert contacts.is_suppressed(db.session, "bob@prospect.example")
        assert db.session.scalar(select(Enrollment.state)) == "bounced"
    assert inbound(world, message_id).contact_id == bob.id
    page = text(client.get(f"/admin/inbound/{message_id}"))
    assert re.search(r'value="not_bounce"[^>]*>Not a bounce</button>', page)
    response = post(client, f"/admin/inbound/{message_id}/correct", {"kind": "not_bounce"}, follow_redirects=True)
    assert f"Message #{message_id} is now treated as a person&#39;s mail, not a bounce." in text(response)
    with world.app_context():
        assert not contacts.is_suppressed(db.session, "bob@prospect.example")
        assert db.session.scalar(select(Enrollment.state)) == "active"
    assert [c.split(" by ")[1].split(";")[0] for c in _corrections(world)] == ["alice@acumen.example"] * 2


def test_a_bounce_for_an_address_that_is_no_contact_is_refused(world):
    message_id = held(world, mail(**DANA), kind="human")
    response = post(signed_in(world), f"/admin/inbound/{message_id}/correct",
                    {"kind": "bounce_soft", "email": "nobody@x.example"}, follow_redirects=True)
    assert "Not corrected: there is no contact with the address &#39;nobody@x.example&#39;." in text(response)
    assert inbound(world, message_id).state == "review"


def test_a_bounce_nobody_can_be_tied_to_says_why(world):
    # Depends on intake.correct raising ValueError when it cannot tell whose address bounced.
    message_id = held(world, mail(**DANA), kind="human")
    response = text(post(signed_in(world), f"/admin/inbound/{message_id}/correct", {"kind": "bounce_hard"},
                         follow_redirects=True))
    assert re.search(r'class="flash error"[^>]*>Not corrected: say whose address bounced[^<]*\.<', response)
    assert "ValueError" not in response
    assert inbound(world, message_id).state == "review"


# --------------------------------------------------------------------------- the forms themselves


def test_enter_in_the_address_field_corrects_nothing(world):
    message_id = held(world, mail(**DANA), kind="human")
    response = post(signed_in(world), f"/admin/inbound/{message_id}/correct", {"kind": "", "email": ""},
                    follow_redirects=True)
    assert "Not corrected: press the button that says what this message is." in text(response)
    assert inbound(world, message_id).state == "review"


def test_every_review_form_carries_a_csrf_token_and_a_post_without_one_changes_nothing(world):
    bob = _bob_got_the_magnet(world)
    asked, maybe = _asked_again(world, bob), _maybe(world)
    client = signed_in(world)
    page = text(client.get("/admin/review"))
    forms = [f for f in _forms(page) if 'method="post"' in f]
    assert len(forms) > 10 and all('name="csrf_token"' in f for f in forms)
    for message_id in (asked, maybe):
        refused = client.post(f"/admin/inbound/{message_id}/correct", data={"kind": "request", "campaign": ROADMAP})
        assert refused.status_code == 400
        assert inbound(world, message_id).state == "review"
    assert len(_magnets(world)) == 1  # only bob's first magnet
