"""Review in headless Chromium: "asked again" and "may be a request for X" as one-click decisions, wide and narrow."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, update

from service import contacts
from service.extensions import db
from service.models import Outbound, utcnow
from tests.browser.conftest import no_overflow, shot, sign_in
from tests.test_admin_support import held, receive
from tests.world import mail

pytestmark = pytest.mark.browser

MAYBE = ["may be a request for Execution Success Roadmap: asks ('do you have') for 'roadmap', which may be "
         "something else", "names 'roadmap' in body (campaign execution-roadmap)"]


def _review_desk(app) -> None:
    """bob got the roadmap and asks again in its thread; dana may be asking for it; a stranger writes."""
    receive(app, mail())
    with app.app_context():
        db.session.execute(update(Outbound).values(state="sent", sent_at=utcnow(), smtp_response="250 2.0.0 Ok"))
        db.session.commit()
        ours = f"<{db.session.scalar(select(Outbound.message_id))}>"
    receive(app, mail(subject="Re: Roadmap please", body="Hi Ken, could you send it again? I can't find the PDF.\n"
                      "Thanks, Bob", In_Reply_To=ours, References=ours))
    body = "Hi Ken, do you have a roadmap for sales teams of our size? We are 12 reps, mostly field sales."
    held(app, mail(sender="Dana Dee <dana@prospect.example>", to="ken@acumen.example", subject="Your roadmap",
                   body=body), kind="human", campaign_slug="execution-roadmap", reasons=MAYBE,
         from_address="dana@prospect.example", subject="Your roadmap", new_text=body)
    receive(app, mail(sender="Stranger <who@else.example>", subject="Partnership?", body="We sell leads.",
                      to="ken@acumen.example"))


def test_review_offers_the_magnet_in_one_click_on_wide_and_narrow_screens(page, phone, world):
    _review_desk(world)
    sign_in(page)
    page.goto("/admin/review")
    main = page.get_by_role("main")
    asked = page.locator("li.review-item", has_text="asked again")
    expect(asked).to_contain_text("Bob Prospect asked again for Execution Success Roadmap")
    maybe = page.locator("li.review-item", has_text="may be a request")
    expect(maybe).to_contain_text("may be a request for Execution Success Roadmap")
    expect(maybe.get_by_role("button", name="Send Execution Success Roadmap")).to_be_visible()
    expect(maybe.get_by_role("button", name="This is an unsubscribe")).to_be_hidden()  # folded away
    stranger = page.locator("li.review-item", has_text="Partnership?")
    expect(stranger.get_by_role("button", name="This is a request")).to_be_visible()  # the usual ones, unfolded
    expect(stranger.get_by_role("button", name="This is an unsubscribe")).to_be_hidden()
    expect(main.get_by_role("button", name="This is an unsubscribe")).to_have_count(0)
    shot(page, "21-review-decisions")
    maybe.get_by_text("Something else? Other corrections").click()
    expect(maybe.get_by_role("button", name="This is a bounce (hard)")).to_be_visible()
    stranger.get_by_text("An unsubscribe or a bounce?").click()
    expect(stranger.get_by_label("Whose address")).to_be_visible()
    shot(page, "22-review-other-corrections-open")

    sign_in(phone)
    phone.goto("/admin/review")
    no_overflow(phone)
    shot(phone, "23-phone-review-decisions")

    asked.get_by_role("button", name="Send the magnet again").click()
    expect(page.get_by_role("status")).to_contain_text("is now treated as a request. 1 mail queued.")
    expect(page.locator("li.review-item", has_text="asked again")).to_have_count(0)
    with world.app_context():
        bob = contacts.find(db.session, "bob@prospect.example")
        rows = db.session.scalars(
            select(Outbound).where(Outbound.contact_id == bob.id, Outbound.kind == "magnet").order_by(Outbound.id)
        )
        assert [r.state for r in rows] == ["sent", "pending"]
    page.locator("li.review-item", has_text="may be a request").get_by_role("button", name="Just a person").click()
    expect(page.get_by_role("status")).to_contain_text("dismissed")
    expect(main).not_to_contain_text(re.compile("may be a request for"))
    shot(page, "24-review-after-decisions")


def test_a_person_s_other_addresses_and_the_trigger_mode_are_shown_plainly(page, world):
    from service.models import Campaign

    receive(world, mail(sender="Bob Prospect <bob@prospect.example>", Reply_To="Bob at work <bob.p@work.example>"))
    with world.app_context():
        bob = contacts.find(db.session, "bob.p@work.example")
        contacts.add_address(db.session, bob, "bob+news@prospect.example", "plus-tag")
        contacts.add_address(db.session, bob, "b.prospect@home.example", "replied in thread")
        db.session.commit()
        bob_id, campaign_id = bob.id, db.session.scalar(select(Campaign.id))
    sign_in(page)
    page.goto(f"/admin/contacts/{bob_id}")
    others = page.locator(".aliases")
    expect(others).to_contain_text("Also known by")
    expect(others).to_contain_text("b.prospect@home.example · replied in our thread from it")
    expect(others).to_contain_text("bob+news@prospect.example · a +tag form of their address")
    shot(page, "25-contact-other-addresses")
    page.goto(f"/admin/campaigns/{campaign_id}")
    mode = page.get_by_role("group", name="Who gets the magnet")
    expect(mode.get_by_label("Mail to the trigger address, or anyone who asks for it by name (default)")
           ).to_be_checked()
    mode.get_by_label("Only mail to the trigger address").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("is saved")
    expect(page.get_by_role("group", name="Who gets the magnet").get_by_label("Only mail to the trigger address")
           ).to_be_checked()
    shot(page, "26-campaign-trigger-mode")
    page.goto("/admin/")
    shot(page, "27-dashboard-funnel-people")


def test_a_bounce_can_be_taken_back_from_its_message_page(page, world):
    from tests.world import dsn

    receive(world, mail())
    with world.app_context():
        db.session.execute(update(Outbound).values(state="sent", sent_at=utcnow()))
        db.session.commit()
        ours = db.session.scalar(select(Outbound.message_id))
    bounce = receive(world, dsn([("bob@prospect.example", "5.1.1", "failed")], original_message_id=ours))
    sign_in(page)
    page.goto(f"/admin/inbound/{bounce}")
    expect(page.get_by_label("Whose address")).to_be_visible()  # unfolded: this mail was taken for a bounce
    shot(page, "28-inbound-bounce-corrections")
    page.get_by_role("button", name="Not a bounce").click()
    expect(page.get_by_role("status")).to_contain_text("is now treated as a person's mail, not a bounce.")
    with world.app_context():
        assert not contacts.is_suppressed(db.session, "bob@prospect.example")
