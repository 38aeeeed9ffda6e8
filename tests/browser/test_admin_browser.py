"""The consultant's cockpit in headless Chromium: sign in, campaigns, a real request, the timeline, CSV."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service import contacts
from service.extensions import db
from service.models import Campaign, Contact
from tests.browser.conftest import PHONE, no_overflow, shot, sign_in
from tests.world import mail, parse, run_poller, run_worker, scalar

pytestmark = pytest.mark.browser


def test_signing_in_is_needed_and_then_lands_on_the_dashboard(page):
    page.goto("/admin/contacts")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    expect(page.get_by_role("status")).to_contain_text("Please sign in")
    shot(page, "01-login")
    page.get_by_label("Email").fill("alice@acumen.example")
    page.get_by_label("Password").fill("wrong password here")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    sign_in(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("At a glance")
    expect(page.get_by_role("link", name="Dashboard")).to_have_attribute("aria-current", "page")
    shot(page, "02-dashboard-empty")


def test_a_campaign_is_created_with_a_step_previewed_and_saved(page, world):
    sign_in(page)
    page.get_by_role("link", name="Campaigns", exact=True).click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name", exact=True).fill("Pipeline Checklist")
    page.get_by_label("Slug (stable id, used in exports)").fill("pipeline-checklist")
    page.get_by_label("Trigger addresses").fill("checklist@acumen.example")
    page.get_by_label("Trigger keywords").fill("pipeline checklist")
    magnet = page.get_by_role("group", name="The magnet: the reply to a request")
    magnet.get_by_label("Subject").fill("Your Pipeline Checklist")
    page.get_by_role("button", name="Add a follow-up").click()
    step = page.get_by_role("group", name="Follow-up 1")
    step.get_by_label("Wait after the previous mail").fill("2d")
    step.get_by_label("Subject").fill("Did the checklist help?")
    step.get_by_label("Text", exact=True).fill("Hi {{ contact.first_name or 'there' }}, any questions on item 3?")
    page.get_by_role("button", name="Preview").click()
    frame = page.frame_locator("iframe[name=preview]")
    expect(frame.locator("body")).to_contain_text("Hi Sample")
    # A follow-up goes as a reply in the magnet's thread, and the preview shows the subject really sent.
    expect(frame.locator("body")).to_contain_text("Re: Your Pipeline Checklist")
    expect(frame.locator("body")).to_contain_text("Hi Sample, any questions on item 3?")
    shot(page, "03-campaign-preview")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Pipeline Checklist is saved")
    with world.app_context():
        saved = db.session.scalar(select(Campaign).where(Campaign.slug == "pipeline-checklist"))
        assert [s.subject for s in saved.steps] == ["Did the checklist help?"]
        assert saved.trigger_addresses == ["checklist@acumen.example"]
    magnet = page.get_by_role("group", name="The magnet: the reply to a request")
    magnet.get_by_label("Text", exact=True).fill("Hi {{ contact.first_name ")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".field.has-error")).to_contain_text("template error on line 1")
    shot(page, "04-campaign-template-error")


def test_a_request_through_dovecot_reaches_the_dashboard_timeline_resend_and_unsubscribe(
    imap_settings, dovecot, sink, page, world
):
    dovecot.append(mail())
    run_poller(world)
    run_worker(world)
    [reply] = [parse(m.data) for m in sink.wait_for(1, timeout=10)]
    assert scalar(world, "SELECT state FROM outbound WHERE kind = 'magnet'") == "sent"
    assert scalar(world, "SELECT count(*) FROM event WHERE kind = 'magnet_sent'") == 1
    sign_in(page)
    asked = page.get_by_role("region", name="Who asked lately")
    expect(asked).to_contain_text("Bob Prospect")
    funnel = page.get_by_role("region", name="The funnel")
    expect(funnel).to_contain_text("people, each counted once per step")
    expect(funnel.get_by_role("row", name=re.compile("^Asked"))).to_have_text(re.compile(r"Asked\s*1\s*1\s*1"))
    got = funnel.get_by_role("row", name=re.compile("^Got the magnet"))
    expect(got).to_have_text(re.compile(r"magnet\s*1\s*1\s*1"))
    expect(page.get_by_role("region", name="Mailbox and queue")).to_contain_text("INBOX")
    shot(page, "05-dashboard-with-a-request")

    asked.get_by_role("link", name="Bob Prospect").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Bob Prospect")
    timeline = page.get_by_role("region", name="Timeline")
    expect(timeline).to_contain_text("Mail in")
    expect(timeline).to_contain_text("request")
    expect(timeline).to_contain_text(re.compile(r"magnet: Re: Roadmap please\W+sent"))
    expect(timeline).to_contain_text("Server: 250")
    expect(page.get_by_role("region", name="Why did or didn't this send?")).to_contain_text("gets no second copy")
    shot(page, "06-contact-timeline")

    page.get_by_role("button", name="Resend the magnet").click()
    expect(page.get_by_role("alert")).to_contain_text("Not resent: a magnet already went to this address")
    world.config["MAGNET_REPEAT_DAYS"] = 0
    page.get_by_role("button", name="Resend the magnet").click()
    expect(page.get_by_role("status")).to_contain_text("The magnet is queued for bob@prospect.example")
    run_worker(world)
    again = parse(sink.wait_for(2, timeout=10)[1].data)
    assert again["In-Reply-To"] == reply["Message-ID"]

    page.get_by_role("link", name="Unsubscribe…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe bob@prospect.example?")
    shot(page, "07-confirm-unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("status")).to_contain_text("bob@prospect.example is unsubscribed")
    expect(page.get_by_role("region", name="Why did or didn't this send?")).to_contain_text("Nothing is sent")
    with world.app_context():
        assert contacts.is_suppressed(db.session, "bob@prospect.example")

    page.set_viewport_size(PHONE)
    page.reload()
    no_overflow(page)
    shot(page, "08-contact-phone")


def test_a_csv_import_maps_previews_runs_in_batches_and_reports_rejects(page, world, tmp_path):
    rows = ["E-mail;Full name;Labels", "not-an-address;Eve;x", "=cmd@evil.example;Mallory;x", "dup@a.example;First;vip",
            "dup@a.example;Second;", "carol@prospect.example;Carol;"]
    rows += [f"person{n}@bulk.example;Person {n};webinar" for n in range(2300)]
    upload = tmp_path / "people.csv"
    upload.write_text("\n".join(rows) + "\n")
    sign_in(page)
    page.goto("/admin/contacts")
    page.get_by_role("link", name="Import CSV").click()
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.get_by_label("Email address column")).to_have_value("0")
    expect(page.get_by_label("Name column")).to_have_value("1")
    expect(page.get_by_label("Tags column")).to_have_value("2")
    expect(page.locator("tr.rejected").first).to_contain_text("is not an email address")
    shot(page, "09-import-preview")
    page.get_by_label("Also tag every imported contact with").fill("imported")
    page.get_by_role("button", name=re.compile(r"^Check all 2,305 rows")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("What importing people.csv would do", timeout=30_000)
    page.get_by_role("button", name=re.compile(r"^Import 2,302 rows")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Imported people.csv", timeout=30_000)
    expect(page.get_by_role("definition").nth(0)).to_have_text("2,302")
    expect(page.get_by_role("definition").nth(2)).to_have_text("3")
    rejected = page.get_by_role("region", name="Rejected rows")
    expect(rejected).to_contain_text("'not-an-address' is not an email address")
    expect(rejected).to_contain_text("duplicate of row 4")
    expect(rejected).to_contain_text("suppressed (unsubscribed): not added")
    shot(page, "10-import-done")
    with world.app_context():
        first = contacts.find(db.session, "dup@a.example")
        assert (first.name, first.tags) == ("First", "vip,imported")
        assert db.session.query(Contact).filter(Contact.domain == "bulk.example").count() == 2300


def test_the_main_pages_fit_a_phone(phone, world):
    sign_in(phone)
    for path, name in (("/admin/", "11-phone-dashboard"), ("/admin/contacts", "12-phone-contacts"),
                       ("/admin/campaigns", "13-phone-campaigns"), ("/admin/review", "14-phone-review")):
        phone.goto(path)
        no_overflow(phone)
        shot(phone, name)
    with world.app_context():
        campaign_id = db.session.scalar(select(Campaign.id))
    phone.goto(f"/admin/campaigns/{campaign_id}")
    no_overflow(phone)
    shot(phone, "15-phone-campaign-editor")


def _busy_desk(app) -> None:
    """A desk after a few weeks: requests and replies over days, a hot lead, failures, mail to review."""
    from datetime import timedelta

    from sqlalchemy import update

    from service import intake
    from service.models import Event, Outbound, utcnow
    from tests.test_admin_support import receive

    receive(app, mail())
    with app.app_context():  # the worker sent it
        db.session.execute(update(Outbound).values(state="sent", sent_at=utcnow(), smtp_response="250 2.0.0 Ok"))
        db.session.commit()
    receive(app, mail())  # asks again inside the limit: a repeat request to review
    receive(app, mail(subject="Quick question", body="Ken, can we talk Monday about our pipeline?",
                      to="ken@acumen.example"))
    receive(app, mail(sender="Stranger <who@else.example>", subject="<b>Partnership?</b> <script>x</script>",
                      body="We sell leads.", to="ken@acumen.example"))
    with app.app_context():
        now = utcnow()
        dana = contacts.upsert(db.session, "dana@prospect.example", "Dana Dee")
        for day in range(1, 30):
            for n in range((day * 7) % 5):
                db.session.add(Event(contact_id=dana.id, kind="request", detail="asked for Execution Success Roadmap",
                                     created_at=now - timedelta(days=day, hours=n)))
            if day % 4 == 1:
                db.session.add(Event(contact_id=dana.id, kind="replied", created_at=now - timedelta(days=day)))
        for state, extra in (("failed", {"smtp_response": "550 5.1.1 <dana@prospect.example>: Recipient address "
                                         "rejected: User unknown in virtual mailbox table"}),
                             ("unknown", {"note": "worker stopped mid-send; the server may or may not have "
                                                  "accepted it"})):
            db.session.add(Outbound(key=f"seed:{state}", kind="magnet", contact_id=dana.id, to_address=dana.email,
                                    subject="Re: Roadmap", message_id=f"{state}@acumen.example", state=state,
                                    attempts=1, claimed_at=now, **extra))
        poison = intake.store(db.session, "INBOX", 1, None, b"Subject: broken\r\n\r\n\xff", now, source_key="poison")
        poison.state, poison.attempts = "quarantined", 3
        poison.error = "Traceback (most recent call last):\n  ...\nValueError: cannot parse this message"
        db.session.commit()


def test_a_busy_desk_shows_what_needs_attention_on_wide_and_narrow_screens(page, phone, world):
    _busy_desk(world)
    sign_in(page)
    expect(page.get_by_role("region", name="Hot leads")).to_contain_text("Bob Prospect")
    failed = page.get_by_role("region", name="What failed, and why")
    expect(failed).to_contain_text("550 5.1.1")
    expect(failed).to_contain_text("worker stopped mid-send")
    expect(page.get_by_role("link", name=re.compile("Review"))).to_contain_text("4")
    shot(page, "16-dashboard-busy")
    page.get_by_role("link", name=re.compile("^Review")).click()
    expect(page.get_by_role("main")).to_contain_text("repeat request within 7 days")
    expect(page.get_by_role("main")).to_contain_text("<b>Partnership?</b> <script>x</script>")  # shown as text
    expect(page.get_by_role("main")).to_contain_text("ValueError: cannot parse this message")
    shot(page, "17-review")
    page.get_by_role("link", name="Sends").click()
    shot(page, "18-sends")
    sign_in(phone)
    no_overflow(phone)
    shot(phone, "19-phone-dashboard-busy")
    phone.goto("/admin/review")
    no_overflow(phone)
    shot(phone, "20-phone-review")


def test_the_mail_check_and_the_magnets_delivery_read_well_on_wide_and_narrow_screens(page, phone, world):
    sign_in(page)
    page.goto("/admin/settings/mail")
    expect(page.get_by_role("heading", name="Mail check")).to_be_visible()
    expect(page.get_by_text("DKIM is not configured").first).to_be_visible()
    expect(page.get_by_role("cell", name="execution-roadmap magnet: In-Reply-To literal")).to_be_visible()
    shot(page, "16-mail-check")
    with world.app_context():
        campaign_id = db.session.scalar(select(Campaign.id))
    page.goto(f"/admin/campaigns/{campaign_id}")
    page.get_by_label("How the magnet travels").select_option("link")
    page.get_by_role("button", name="Save").first.click()
    page.get_by_label("Name the prospect sees").fill("Roadmap 2027.pdf")
    page.get_by_label("Name the prospect sees").press("Enter")
    expect(page.get_by_label("Name the prospect sees")).to_have_value("Roadmap 2027.pdf")
    shot(page, "17-campaign-delivery")
    with world.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        assert (campaign.delivery, campaign.assets[0].display_name) == ("link", "Roadmap 2027.pdf")
    sign_in(phone)
    for path, name in (("/admin/settings/mail", "18-phone-mail-check"),
                       (f"/admin/campaigns/{campaign_id}", "19-phone-campaign-delivery")):
        phone.goto(path)
        no_overflow(phone)
        shot(phone, name)
