"""Contacts a consultant can use, in headless Chromium: custom fields on the contact page, the import's dry
run, and enrolling a search result after a count to confirm; wide and narrow."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from service import contacts, outbound
from service.extensions import db
from service.models import Contact, utcnow
from tests.browser.conftest import no_overflow, shot, sign_in

pytestmark = pytest.mark.browser


def _people(app) -> int:
    """Ann with a company and fields, four more at acme.example (one unsubscribed, one mailed yesterday)."""
    with app.app_context():
        ann = Contact(email="ann@acme.example", name="Ann Able", domain="acme.example", company="Acme Ltd",
                      fields={"job_title": "Chief Executive", "region": "Midwest"})
        db.session.add(ann)
        for name in ("ben", "cat", "don", "eli"):
            contacts.upsert(db.session, f"{name}@acme.example", name.title())
        contacts.suppress(db.session, "cat@acme.example", "unsubscribed", "asked by email")
        don = contacts.find(db.session, "don@acme.example")
        row = outbound.plan(db.session, "earlier", "magnet", don.email, "acumen.example", "Earlier", contact_id=don.id)
        outbound.mark_sent(row, "250 OK")
        row.created_at = utcnow() - timedelta(days=1)
        db.session.commit()
        return ann.id


def test_a_contacts_fields_are_shown_and_edited(page, phone, world):
    ann = _people(world)
    sign_in(page)
    page.goto(f"/admin/contacts/{ann}")
    details = page.get_by_role("region", name="Details")
    expect(details).to_contain_text("Acme Ltd")
    expect(details).to_contain_text("contact.fields.job_title")
    details.get_by_text("Edit the company and fields").click()
    page.locator("#custom-2-name").fill("Next step")
    page.locator("#custom-2-value").fill("Call on Tuesday")
    page.get_by_role("button", name="Save details").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved: company Acme Ltd, 3 field(s).")
    expect(page.get_by_role("region", name="Details")).to_contain_text("Call on Tuesday")
    shot(page, "51-contact-fields")
    page.get_by_text("Edit the company and fields").click()
    expect(page.locator("#custom-2-name")).to_have_value("next_step")
    shot(page, "58-contact-fields-edit")
    sign_in(phone)
    phone.goto(f"/admin/contacts/{ann}")
    phone.get_by_text("Edit the company and fields").click()
    no_overflow(phone)
    shot(phone, "54-phone-contact-fields")


def test_the_import_dry_run_reports_rejects_and_changes_before_anything_is_written(page, phone, world, tmp_path):
    rows = ["Email,Name,Company,Job Title,Notes", "bob@ example.com,Bob,Prospect Inc,Buyer,",
            "  Dee@Acme.EXAMPLE ,Dee, Acme Ltd ,Director,met at the fair",
            *(f"p{n}@fair.example,P{n},Fair Co,Visitor," for n in range(20)), "not-an-address,Nobody,,,"]
    upload = tmp_path / "fair.csv"
    upload.write_text("\n".join(rows) + "\n")
    sign_in(page)
    page.goto("/admin/contacts/import")
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.get_by_label("Company column")).to_have_value("2")
    expect(page.get_by_label(re.compile(r"Job Title"))).to_be_checked()
    page.get_by_label(re.compile(r"Notes →")).uncheck()
    page.get_by_role("button", name="Check all 23 rows").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("What importing fair.csv would do")
    rejected = page.get_by_role("region", name=re.compile("Rejected rows"))
    expect(rejected).to_contain_text("'bob@ example.com' is not an email address: it has a space in it")
    expect(rejected).to_contain_text("'not-an-address' is not an email address")
    expect(page.get_by_role("region", name="What the import changes")).to_contain_text("trimmed, lower-cased")
    with world.app_context():
        assert db.session.query(Contact).filter(Contact.domain == "fair.example").count() == 0
    shot(page, "52-import-dry-run")
    check_url = page.url
    sign_in(phone)
    phone.goto(check_url)
    no_overflow(phone)
    shot(phone, "55-phone-import-dry-run")
    page.get_by_role("button", name="Import 21 rows").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Imported fair.csv")
    expect(page.get_by_role("link", name="Enrol them in a campaign…")).to_be_visible()
    with world.app_context():
        dee = contacts.find(db.session, "dee@acme.example")
        assert (dee.company, dee.fields) == ("Acme Ltd", {"job_title": "Director"})


def test_a_search_is_enrolled_after_a_count_that_names_who_is_skipped(page, phone, world, sink):
    _people(world)
    sign_in(page)
    page.goto("/admin/contacts?q=acme.example")
    page.get_by_role("link", name="Enrol them in a campaign…").click()
    page.get_by_label("Campaign, and where they start").select_option(
        label="Execution Success Roadmap: follow-up 2: One question for your forecast")
    page.get_by_role("button", name="Count who would be mailed").click()
    count = page.get_by_role("region", name=re.compile("will be mailed"))
    expect(count).to_contain_text("3 people will be mailed")
    expect(page.get_by_role("region", name="Who is skipped, and why")).to_contain_text("suppressed (unsubscribed)")
    expect(page.get_by_role("region", name="Who is skipped, and why")).to_contain_text("inside the repeat limit")
    shot(page, "53-enrol-confirm")
    confirm_url = page.url
    sign_in(phone)
    phone.goto(confirm_url)
    no_overflow(phone)
    shot(phone, "56-phone-enrol-confirm")
    page.get_by_role("button", name="Enrol and mail 3").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("^Enrolled the contacts matching"))
    expect(page.get_by_role("definition").nth(0)).to_have_text("3")
    expect(page.get_by_role("definition").nth(1)).to_have_text("2")
    shot(page, "57-enrol-report")
