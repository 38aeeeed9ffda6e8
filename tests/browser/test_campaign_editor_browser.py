"""The campaign editor telling the truth, in headless Chromium: the slug made from the name (by the server:
the admin runs no script), the warning before an active magnet promises a file it lacks, the file in the
same save, the preview's real "Re:" subjects for a contact, and the plan of dates, wide and narrow."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from service import campaigns
from service.extensions import db
from tests.browser.conftest import SHOTS, no_overflow, shot, sign_in
from tests.conftest import PDF
from tests.test_admin_support import receive
from tests.world import mail, run_worker

pytestmark = pytest.mark.browser


def _new_active_campaign(tab) -> None:
    """The new-campaign form filled in as an admin would, keeping the default text ("…attached.")."""
    tab.goto("/admin/campaigns/new")
    tab.get_by_label("Name", exact=True).fill("Pipeline Checklist")
    tab.get_by_label("Trigger addresses").fill("checklist@acumen.example")
    tab.get_by_label("Active: answer requests for it now").check()
    tab.get_by_role("group", name="The magnet: the reply to a request").get_by_label("Subject").fill(
        "Your Pipeline Checklist")
    tab.get_by_role("button", name="Save", exact=True).click()


def test_the_slug_comes_from_the_name_a_missing_file_is_questioned_and_the_pdf_goes_in_the_same_save(
    page, phone, world
):
    sign_in(page)
    _new_active_campaign(page)
    warning = page.get_by_role("alert")
    expect(warning).to_contain_text("Not saved yet: please confirm")
    expect(warning).to_contain_text("The magnet says “attached” but the campaign has no file")
    expect(page.get_by_label("Slug (stable id, used in exports)")).to_have_value("pipeline-checklist")
    shot(page, "61-campaign-save-warning")
    page.get_by_role("link", name="Choose the file").click()
    expect(page.get_by_label("Files to attach to the magnet")).to_be_in_viewport()
    page.get_by_label("Files to attach to the magnet").set_input_files(
        files=[{"name": "checklist.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Pipeline Checklist is saved and active. checklist.pdf attached.")
    expect(page.get_by_role("region", name="Attachments of the magnet")).to_contain_text("checklist.pdf")

    sign_in(phone)
    _new_active_campaign(phone)
    expect(phone.get_by_role("alert")).to_contain_text("Not saved yet: please confirm")
    no_overflow(phone)
    shot(phone, "62-phone-campaign-save-warning")


def test_the_preview_shows_a_contacts_real_thread_subject_and_the_plan_its_dates(page, phone, world, sink):
    receive(world, mail(subject="Roadmap please"))
    run_worker(world)
    sink.wait_for(1, timeout=10)
    with world.app_context():
        campaign = campaigns.by_slug(db.session, "execution-roadmap")
        campaign.window, campaign.timezone = "mon-fri 09:00-17:00", "America/Chicago"
        db.session.commit()
        campaign_id = campaign.id
    for tab, wide in ((page, True), (phone, False)):
        sign_in(tab)
        tab.goto(f"/admin/campaigns/{campaign_id}")
        tab.get_by_label("Preview for contact").fill("bob@prospect")
        tab.get_by_role("button", name="Preview", exact=True).click()
        frame = tab.frame_locator("iframe[name=preview]")
        expect(frame.locator("body")).to_contain_text("As Bob Prospect <bob@prospect.example> would get it.")
        expect(frame.locator(".subject").nth(1)).to_have_text("Subject: Re: Roadmap please")
        expect(frame.locator("body")).to_contain_text("Hi Bob,")
        if not wide:
            no_overflow(tab)
        # The pane alone: a full-page shot leaves the iframe unpainted in headless Chromium.
        pane = tab.locator(".preview-pane")
        pane.scroll_into_view_if_needed()
        frame.locator(".mail").nth(1).scroll_into_view_if_needed()  # follow-up 1, in the magnet's thread
        SHOTS.mkdir(parents=True, exist_ok=True)
        name = "63-campaign-preview-thread-subject" if wide else "64-phone-campaign-preview-thread-subject"
        pane.screenshot(path=str(SHOTS / f"{name}.png"))

        tab.get_by_role("link", name="Plan: when each mail goes").click()
        tab.get_by_label("A request arriving at").fill("2026-12-04T16:30")
        tab.get_by_role("button", name="Show the plan").click()
        expect(tab.get_by_role("table")).to_contain_text("Mon 7 Dec 2026, 09:00 CST")
        expect(tab.get_by_role("table")).to_contain_text("outside the window")
        if not wide:
            no_overflow(tab)
        shot(tab, "65-campaign-plan" if wide else "66-phone-campaign-plan")
