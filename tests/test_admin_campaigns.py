"""Campaigns in the admin: the form, template errors, the live preview, test sends, order, files, YAML."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import func, select

from service import campaigns, contacts
from service.extensions import db
from service.models import Campaign, Contact, Outbound, User, utcnow
from tests.conftest import PDF
from tests.test_admin_support import post, receive, send_job, signed_in, text, token
from tests.world import mail, parse, run_worker

FORM = {
    "slug": "pipeline-checklist", "name": "Pipeline Checklist", "active": "y",
    "addresses": "checklist@acumen.example\n", "keywords": "pipeline checklist\nchecklist",
    "magnet_subject": "Your Pipeline Checklist", "magnet_text": "Hi {{ contact.first_name or 'there' }}, here it is.",
    "magnet_html": "", "window": "mon-fri 09:00-17:00", "timezone": "Europe/Berlin", "preview_contact": "",
    "steps-0-after": "2d", "steps-0-subject": "Any questions?", "steps-0-text": "Hi {{ contact.first_name }}, one?",
    "steps-0-html": "", "steps-1-after": "5d", "steps-1-subject": "Last note", "steps-1-text": "Bye.",
    "steps-1-html": "",
}


def _campaign(app, slug: str) -> Campaign | None:
    with app.app_context():
        campaign = db.session.scalar(select(Campaign).where(Campaign.slug == slug))
        if campaign:
            _ = campaign.steps, campaign.assets
            db.session.expunge(campaign)
        return campaign


def test_a_new_campaign_with_steps_is_saved_from_the_form(world):
    response = post(signed_in(world), "/admin/campaigns/new", {**FORM, "action": "save"})
    assert response.status_code == 302
    saved = _campaign(world, "pipeline-checklist")
    assert saved.active and saved.trigger_addresses == ["checklist@acumen.example"]
    assert saved.keywords == ["pipeline checklist", "checklist"]
    steps = [(s.position, s.after, s.subject) for s in saved.steps]
    assert steps == [(1, "2d", "Any questions?"), (2, "5d", "Last note")]
    assert (saved.window, saved.timezone) == ("mon-fri 09:00-17:00", "Europe/Berlin")
    with world.app_context():
        assert [r.slug for r in campaigns.rules(db.session)] == ["execution-roadmap", "pipeline-checklist"]


def test_step_buttons_add_move_and_remove_without_saving(world):
    client = signed_in(world)
    moved = text(post(client, "/admin/campaigns/new", {**FORM, "action": "down-0"}))
    assert moved.index('value="Last note"') < moved.index('value="Any questions?"')
    added = text(post(client, "/admin/campaigns/new", {**FORM, "action": "add-step"}))
    assert "Follow-up 3" in added
    removed = text(post(client, "/admin/campaigns/new", {**FORM, "action": "remove-0"}))
    assert "Any questions?" not in removed and "Last note" in removed
    assert _campaign(world, "pipeline-checklist") is None


def test_template_and_field_errors_show_in_the_form_not_a_500(world):
    bad = {**FORM, "magnet_text": "Hi {{ contact.first_name ", "steps-0-after": "soon", "window": "weekdays",
           "action": "save"}
    response = post(signed_in(world), "/admin/campaigns/new", bad)
    page = text(response)
    assert response.status_code == 400 and "Not saved" in page
    assert "Text: template error on line 1" in page
    assert "delay &#39;soon&#39; must look like 30s, 15m, 4h or 3d" in page
    assert "window &#39;weekdays&#39; must look like" in page
    assert 'aria-invalid="true"' in page
    assert _campaign(world, "pipeline-checklist") is None


def test_a_taken_slug_is_refused(world):
    response = post(signed_in(world), "/admin/campaigns/new", {**FORM, "slug": "execution-roadmap", "action": "save"})
    assert response.status_code == 400 and "that slug is taken" in text(response)


def test_editing_keeps_the_slug_and_the_attachments(world):
    campaign = _campaign(world, "execution-roadmap")
    client = signed_in(world)
    response = post(client, f"/admin/campaigns/{campaign.id}",
                    {**FORM, "slug": "renamed", "name": "Roadmap v2", "action": "save"})
    assert response.status_code == 302
    edited = _campaign(world, "execution-roadmap")
    assert edited.name == "Roadmap v2" and [a.filename for a in edited.assets] == ["roadmap.pdf"]
    assert len(edited.steps) == 2


def test_the_preview_renders_the_unsaved_form_for_a_sample_or_a_real_contact(world):
    client = signed_in(world)
    frame = client.post("/admin/campaigns/preview", data={**FORM, "csrf_token": token(client)})
    assert frame.status_code == 200
    assert frame.headers["Content-Security-Policy"].startswith("sandbox")
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN"
    page = text(frame)
    # The sample prospect is the one a test send is written for: "Hi Sample" in both.
    assert "Hi Sample, here it is." in page and "Hi Sample, one?" in page
    assert "Subject: Your Pipeline Checklist<" in page and page.count("Subject: Re: Your Pipeline Checklist<") == 2
    assert "You are getting this because you asked Ken Thoreson for the Pipeline Checklist." in page
    with world.app_context():
        from service import contacts

        contacts.upsert(db.session, "dana@prospect.example", "Dana Dee")
        db.session.commit()
    frame = client.post("/admin/campaigns/preview", data={**FORM, "preview_contact": "dana@prospect.example",
                                                          "csrf_token": token(client)})
    assert "Hi Dana, here it is." in text(frame) and "As Dana Dee" in text(frame)


def test_a_template_that_fails_at_render_time_is_shown_in_the_preview(world):
    client = signed_in(world)
    for source, error in (("{{ contact.__class__.__mro__ }}", "SecurityError"),
                          ("{{ 1 / 0 }}", "ZeroDivisionError"), ("{% for %}", "TemplateSyntaxError")):
        frame = client.post("/admin/campaigns/preview",
                            data={**FORM, "magnet_text": source, "csrf_token": token(client)})
        assert frame.status_code == 200 and "This mail cannot be rendered" in text(frame), source
        assert error in text(frame), source


def test_the_saved_campaign_preview_is_a_sandboxed_frame_on_its_page(world):
    campaign = _campaign(world, "execution-roadmap")
    client = signed_in(world)
    page = text(client.get(f"/admin/campaigns/{campaign.id}"))
    assert re.search(r'<iframe name="preview"[^>]*sandbox=""', page)
    frame = client.get(f"/admin/campaigns/{campaign.id}/preview")
    assert "Attached: Execution-Success-Roadmap.pdf" in text(frame) and "<script" not in text(frame)


def test_send_a_test_queues_a_test_row_and_the_worker_mails_it_to_the_admin(world, redis_server, sink):
    campaign = _campaign(world, "execution-roadmap")
    client = signed_in(world)
    assert 'value="alice@acumen.example"' in text(client.get(f"/admin/campaigns/{campaign.id}"))
    response = post(client, f"/admin/campaigns/{campaign.id}/test", {"which": "2", "to": "alice@acumen.example"},
                    follow_redirects=True)
    assert "A test of the saved follow-up 2 is on its way to alice@acumen.example" in text(response)
    with world.app_context():
        row = db.session.scalar(select(Outbound))
        assert (row.kind, row.to_address, row.campaign_id, row.enrollment_id, row.contact_id, row.step_position) == (
            "test", "alice@acumen.example", campaign.id, None, None, 2)
        job = send_job(redis_server.client(), row)
    assert job.func_name == "workers.jobs.send" and job.args == (row.id,)
    run_worker(world)
    [sent] = sink.wait_for(1, timeout=10)
    assert sent.rcpt_tos == ["alice@acumen.example"]
    # Follow-ups answer the magnet's thread: the test says what a prospect's follow-up says.
    assert parse(sent.data)["Subject"] == "[Test] Re: Your Execution Success Roadmap"
    with world.app_context():
        assert db.session.scalar(select(func.count(Contact.id))) == 0  # no contact row for the admin


def test_activate_pause_and_priority_change_what_intake_matches(world):
    client = signed_in(world)
    post(client, "/admin/campaigns/new", {**FORM, "action": "save"})
    second = _campaign(world, "pipeline-checklist")
    post(client, f"/admin/campaigns/{second.id}/move", {"direction": "up"})
    with world.app_context():
        assert [r.slug for r in campaigns.rules(db.session)] == ["pipeline-checklist", "execution-roadmap"]
    post(client, f"/admin/campaigns/{second.id}/pause")
    with world.app_context():
        assert [r.slug for r in campaigns.rules(db.session)] == ["execution-roadmap"]
    post(client, f"/admin/campaigns/{second.id}/activate")
    assert _campaign(world, "pipeline-checklist").active


def test_attachments_are_size_checked_downloaded_as_files_and_removed_after_a_confirm(world):
    world.config["ASSET_MAX_BYTES"] = 1000
    campaign = _campaign(world, "execution-roadmap")
    client = signed_in(world)
    too_big = post(client, f"/admin/campaigns/{campaign.id}/assets", {"file": (io.BytesIO(b"x" * 1001), "big.pdf")},
                   content_type="multipart/form-data", follow_redirects=True)
    assert "Not attached: big.pdf is" in text(too_big) and "attachments are limited" in text(too_big)
    post(client, f"/admin/campaigns/{campaign.id}/assets", {"file": (io.BytesIO(b"<html>hi"), "../../page.html")},
         content_type="multipart/form-data")
    names = {a.filename: a.id for a in _campaign(world, "execution-roadmap").assets}
    assert set(names) == {"roadmap.pdf", "page.html"}
    download = client.get(f"/admin/campaigns/{campaign.id}/assets/{names['page.html']}")
    assert download.mimetype == "application/octet-stream" and "attachment" in download.headers["Content-Disposition"]
    assert client.get(f"/admin/campaigns/{campaign.id}/assets/{names['roadmap.pdf']}").data == PDF
    confirm = client.get(f"/admin/campaigns/{campaign.id}/assets/{names['page.html']}/delete")
    assert "Remove page.html?" in text(confirm)
    post(client, f"/admin/campaigns/{campaign.id}/assets/{names['page.html']}/delete")
    assert [a.filename for a in _campaign(world, "execution-roadmap").assets] == ["roadmap.pdf"]


def test_yaml_export_and_import_round_trip_with_the_cli_format(world):
    client = signed_in(world)
    exported = client.get("/admin/campaigns/export.yaml")
    document = yaml.safe_load(exported.data)
    assert document["campaigns"][0]["slug"] == "execution-roadmap"
    with world.app_context():
        assert exported.data.decode() == campaigns.export_yaml(db.session)
    document["campaigns"][0]["name"] = "Roadmap, imported"
    document["campaigns"].append({**document["campaigns"][0], "slug": "copy", "name": "A copy"})
    response = post(client, "/admin/campaigns/import",
                    {"file": (io.BytesIO(yaml.safe_dump(document).encode()), "campaigns.yaml")},
                    content_type="multipart/form-data", follow_redirects=True)
    assert "Imported Roadmap, imported, A copy." in text(response)
    copy = _campaign(world, "copy")
    assert [a.filename for a in copy.assets] == ["roadmap.pdf"] and copy.assets[0].data == PDF


def test_a_yaml_import_cannot_read_files_from_the_server(world):
    document = {"campaigns": [{"slug": "x", "name": "X", "magnet": {"subject": "s", "text": "t",
                                                                   "attachments": ["../../../etc/passwd"]}}]}
    response = post(signed_in(world), "/admin/campaigns/import",
                    {"file": (io.BytesIO(yaml.safe_dump(document).encode()), "c.yaml")},
                    content_type="multipart/form-data", follow_redirects=True)
    assert "Nothing imported: attachment &#39;../../../etc/passwd&#39;: give a file name, not a path" in text(response)
    assert _campaign(world, "x") is None


def test_per_campaign_numbers_count_people_once_per_step(world):
    receive(world, mail())
    with world.app_context():  # a second magnet planned for bob (asked again after the limit): still one person
        first = db.session.scalar(select(Outbound))
        db.session.add(Outbound(key="again", kind="magnet", contact_id=first.contact_id,
                                enrollment_id=first.enrollment_id, to_address=first.to_address,
                                message_id="again@acumen.example", state="pending"))
        db.session.commit()
    campaign = _campaign(world, "execution-roadmap")
    page = text(signed_in(world).get(f"/admin/campaigns/{campaign.id}"))
    assert re.search(r"<dt>Asked</dt><dd>1</dd>", page)
    assert re.search(r"Magnet</th><td class=\"num\" data-label=\"Sent\">0</td><td class=\"num\" "
                     r"data-label=\"Scheduled\">1</td>", page)
    numbers = re.search(r'id="stats-h".*?</section>', page, re.S).group(0)
    assert "people, each counted once per step" in numbers
    listing = text(signed_in(world).get("/admin/campaigns"))
    assert re.search(r"<dt>Asked</dt><dd>1</dd>", listing) and "The counts are people" in listing


def _checked(page: str) -> list[str]:
    """The values of the checked "Who gets the magnet" radio buttons."""
    radios = re.findall(r'<input[^>]*name="trigger_mode"[^>]*>', page)
    return [re.search(r'value="([^"]+)"', r).group(1) for r in radios if " checked" in r]


def test_who_gets_the_magnet_defaults_to_asked_by_name_and_round_trips_address_only(world):
    client = signed_in(world)
    new = text(client.get("/admin/campaigns/new"))
    assert "Who gets the magnet" in new and _checked(new) == ["address-or-asked"]
    assert "Mail to the trigger address, or anyone who asks for it by name (default)" in new
    assert "Only mail to the trigger address" in new
    response = post(client, "/admin/campaigns/new", {**FORM, "trigger_mode": "address-only", "action": "save"})
    assert response.status_code == 302
    saved = _campaign(world, "pipeline-checklist")
    assert saved.trigger_mode == "address-only"
    assert _checked(text(client.get(f"/admin/campaigns/{saved.id}"))) == ["address-only"]
    exported = yaml.safe_load(client.get("/admin/campaigns/export.yaml").data)
    [entry] = [c for c in exported["campaigns"] if c["slug"] == "pipeline-checklist"]
    assert entry["triggers"]["mode"] == "address-only"
    assert "only mail to its address" in text(client.get("/admin/campaigns"))
    post(client, f"/admin/campaigns/{saved.id}", {**FORM, "trigger_mode": "address-or-asked", "action": "save"})
    assert _campaign(world, "pipeline-checklist").trigger_mode == "address-or-asked"


def test_an_unknown_trigger_mode_is_refused_in_the_form(world):
    response = post(signed_in(world), "/admin/campaigns/new", {**FORM, "trigger_mode": "everyone", "action": "save"})
    assert response.status_code == 400 and "Not saved" in text(response)
    assert _campaign(world, "pipeline-checklist") is None


def test_re_importing_keeps_each_campaign_its_own_same_named_attachment(world):
    client = signed_in(world)
    other = {"campaigns": [{"slug": "forecast", "name": "Forecast guide", "magnet": {
        "subject": "s", "text": "t", "attachments": ["roadmap.pdf"]}}]}
    post(client, "/admin/campaigns/import", {"file": (io.BytesIO(yaml.safe_dump(other).encode()), "c.yaml"),
                                            "attachments": (io.BytesIO(b"%PDF other"), "roadmap.pdf")},
         content_type="multipart/form-data")
    assert _campaign(world, "forecast").assets[0].data == b"%PDF other"
    exported = client.get("/admin/campaigns/export.yaml").data
    post(client, "/admin/campaigns/import", {"file": (io.BytesIO(exported), "all.yaml")},
         content_type="multipart/form-data")
    assert _campaign(world, "execution-roadmap").assets[0].data == PDF
    assert _campaign(world, "forecast").assets[0].data == b"%PDF other"


def test_a_new_file_of_the_same_name_replaces_the_old_one(world):
    campaign = _campaign(world, "execution-roadmap")
    response = post(signed_in(world), f"/admin/campaigns/{campaign.id}/assets",
                    {"file": (io.BytesIO(b"%PDF new"), "roadmap.pdf")}, content_type="multipart/form-data")
    assert response.status_code == 302
    stored = [(a.filename, a.data) for a in _campaign(world, "execution-roadmap").assets]
    assert stored == [("roadmap.pdf", b"%PDF new")]


def test_a_downloaded_attachment_name_is_quoted_in_the_header(world):
    with world.app_context():
        campaign = campaigns.by_slug(db.session, "execution-roadmap")
        campaign.assets[0].filename = 'a;filename=evil.html "路线图".pdf'
        db.session.commit()
        ids = (campaign.id, campaign.assets[0].id)
    header = signed_in(world).get("/admin/campaigns/{}/assets/{}".format(*ids)).headers["Content-Disposition"]
    assert header.startswith('attachment; filename="afilenameevil.html_.pdf"') and "filename*=UTF-8''a%3B" in header
    assert header.count(";") == 2  # the name's own ';' cannot start a parameter


# --------------------------------------------------------------------------- editing that tells the truth


def _subject_line(head: bytes) -> str:
    """The Subject header exactly as it is on the wire, unfolded by hand (never the parsed view)."""
    found = re.search(rb"^Subject:[ \t]?(.*?)\r\n(?![ \t])", head.split(b"\r\n\r\n", 1)[0] + b"\r\n", re.M | re.S)
    return re.sub(rb"\r\n([ \t])", rb"\1", found.group(1)).decode()


def _shown(frame: str, summary: str) -> list[str]:
    """The blocks the preview shows under a summary ("Headers as sent", "Plain-text version"), one per mail."""
    return [html.unescape(b) for b in re.findall(rf"{summary}</summary><pre>(.*?)</pre>", frame, re.S)]


@pytest.mark.parametrize(("asked", "thread"), [
    ("Roadmap please", ["Re: Roadmap please", "Re: Roadmap please"]),
    ("", ["Your Execution Success Roadmap", "Re: Your Execution Success Roadmap"]),  # a request with no subject
])
def test_the_preview_shows_the_subject_a_real_follow_up_carries_on_the_wire(world, sink, asked, thread):
    receive(world, mail(subject=asked))
    run_worker(world)
    sink.wait_for(1, timeout=10)
    with world.app_context():  # follow-up 1's time comes now: the test waits for no clock
        step = db.session.scalar(select(Outbound).where(Outbound.step_position == 1))
        step.due_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    run_worker(world)
    magnet, followup = [m.data for m in sink.wait_for(2, timeout=10)]
    campaign = _campaign(world, "execution-roadmap")
    frame = text(signed_in(world).get(f"/admin/campaigns/{campaign.id}/preview?contact=bob@prospect.example"))
    shown = [_subject_line(h.encode()) for h in _shown(frame, "Headers as sent")]
    assert shown[:2] == [_subject_line(magnet), _subject_line(followup)] == thread
    assert "As Bob Prospect &lt;bob@prospect.example&gt; would get it." in frame and "Hi Bob," in frame


def test_without_a_request_subject_the_follow_ups_answer_the_magnets_own(world):
    client = signed_in(world)
    frame = text(client.post("/admin/campaigns/preview", data={**FORM, "csrf_token": token(client)}))
    assert [_subject_line(h.encode()) for h in _shown(frame, "Headers as sent")] == [
        "Your Pipeline Checklist", "Re: Your Pipeline Checklist", "Re: Your Pipeline Checklist"]
    frame = text(client.post("/admin/campaigns/preview", data={**FORM, "preview_subject": "checklist?",
                                                              "csrf_token": token(client)}))
    assert {_subject_line(h.encode()) for h in _shown(frame, "Headers as sent")} == {"Re: checklist?"}


def test_the_contact_picker_finds_one_person_by_part_of_an_address_and_lists_several(world):
    with world.app_context():
        contacts.upsert(db.session, "dana@prospect.example", "Dana Dee")
        contacts.upsert(db.session, "dan@prospect.example", "Dan Do")
        db.session.commit()
    client = signed_in(world)
    one = text(client.post("/admin/campaigns/preview", data={**FORM, "preview_contact": "DANA@",
                                                            "csrf_token": token(client)}))
    assert "As Dana Dee &lt;dana@prospect.example&gt; would get it." in one and "Hi Dana, here it is." in one
    several = text(client.post("/admin/campaigns/preview", data={**FORM, "preview_contact": "prospect.example",
                                                                "csrf_token": token(client)}))
    assert "2 contacts match “prospect.example”: dan@prospect.example, dana@prospect.example" in several
    assert "Hi Sample, here it is." in several
    none = text(client.post("/admin/campaigns/preview", data={**FORM, "preview_contact": "zoe@",
                                                             "csrf_token": token(client)}))
    assert "No contact matches “zoe@”" in none and "Hi Sample, here it is." in none
    page = text(client.get("/admin/campaigns/new"))
    assert 'list="contact-choices"' in page and '<option value="dana@prospect.example">' in page


def test_a_test_goes_to_the_typed_address_as_the_preview_renders_it_and_the_address_is_remembered(world, sink):
    campaign = _campaign(world, "execution-roadmap")
    client = signed_in(world)
    response = post(client, f"/admin/campaigns/{campaign.id}/test", {"which": "1", "to": " Ken.Tests@Acumen.example"},
                    follow_redirects=True)
    assert "on its way to ken.tests@acumen.example" in text(response)
    run_worker(world)
    [sent] = sink.wait_for(1, timeout=10)
    assert sent.rcpt_tos == ["ken.tests@acumen.example"]
    frame = text(client.get(f"/admin/campaigns/{campaign.id}/preview"))
    previewed = _shown(frame, "Plain-text version")[1]
    got = parse(sent.data)
    sent_text = got.get_body(("plain",)).get_content().replace("\r\n", "\n")  # the wire's line ends
    assert previewed.startswith("Hi Sample,") and sent_text == previewed
    assert _subject_line(sent.data) == "[Test] " + _subject_line(_shown(frame, "Headers as sent")[1].encode())
    assert 'value="ken.tests@acumen.example"' in text(client.get(f"/admin/campaigns/{campaign.id}"))
    with world.app_context():
        assert db.session.scalar(select(User.test_address)) == "ken.tests@acumen.example"


def test_a_test_to_something_that_is_no_address_is_refused(world):
    campaign = _campaign(world, "execution-roadmap")
    response = post(signed_in(world), f"/admin/campaigns/{campaign.id}/test", {"which": "magnet", "to": "ken"},
                    follow_redirects=True)
    assert "No test sent: give one address" in text(response)
    with world.app_context():
        assert db.session.scalar(select(func.count(Outbound.id))) == 0


def test_a_new_campaign_takes_its_pdf_in_the_same_post(world):
    data = {**FORM, "magnet_text": "Hi, the checklist is attached.", "action": "save",
            "files": (io.BytesIO(PDF), "checklist.pdf")}
    response = post(signed_in(world), "/admin/campaigns/new", data, content_type="multipart/form-data",
                    follow_redirects=True)
    assert "Pipeline Checklist is saved and active. checklist.pdf attached." in text(response)
    saved = _campaign(world, "pipeline-checklist")
    assert [(a.filename, a.content_type, a.data) for a in saved.assets] == [("checklist.pdf", "application/pdf", PDF)]


def test_a_refused_file_saves_nothing(world):
    data = {**FORM, "action": "save", "files": (io.BytesIO(b""), "empty.pdf")}
    response = post(signed_in(world), "/admin/campaigns/new", data, content_type="multipart/form-data")
    assert response.status_code == 400 and "Not saved: empty.pdf is empty" in text(response)
    assert _campaign(world, "pipeline-checklist") is None


@pytest.mark.parametrize("words", ["The checklist is attached.", "See the attachment.", "Your PDF awaits."])
def test_an_active_magnet_promising_a_file_it_lacks_is_saved_only_when_confirmed(world, words):
    client = signed_in(world)
    data = {**FORM, "magnet_text": f"Hi! {words}", "action": "save"}
    asked = post(client, "/admin/campaigns/new", data)
    page = text(asked)
    assert asked.status_code == 200 and "Not saved yet: please confirm" in page and "has no file" in page
    assert _campaign(world, "pipeline-checklist") is None
    assert post(client, "/admin/campaigns/new", {**data, "save_anyway": "y"}).status_code == 302
    assert _campaign(world, "pipeline-checklist").active


def test_a_paused_or_file_carrying_magnet_needs_no_confirmation(world):
    client = signed_in(world)
    paused = {**FORM, "slug": "paused", "active": "", "magnet_text": "It is attached.", "action": "save"}
    assert post(client, "/admin/campaigns/new", paused).status_code == 302
    campaign = _campaign(world, "execution-roadmap")  # its text says "attached as a PDF", and it has the file
    assert post(client, f"/admin/campaigns/{campaign.id}", {**FORM, "magnet_text": "attached", "action": "save"},
                ).status_code == 302
    with world.app_context():
        campaigns.remove_asset(campaigns.by_slug(db.session, "execution-roadmap"), campaign.assets[0].id)
        db.session.commit()
    asked = post(client, f"/admin/campaigns/{campaign.id}", {**FORM, "magnet_text": "attached", "action": "save"})
    assert "Not saved yet: please confirm" in text(asked)


@pytest.mark.parametrize("window", ["mon-fri 09:00-09:00", "mon-fri 17:00-09:00"])
def test_a_window_that_can_never_open_is_refused_even_with_save_anyway(world, window):
    # Every window the format can spell names at least one day, so only an empty span never opens:
    # that is no warning to wave through but an error.
    data = {**FORM, "window": window, "save_anyway": "y", "action": "save"}
    response = post(signed_in(world), "/admin/campaigns/new", data)
    assert response.status_code == 400 and "closes before it opens" in text(response)
    assert _campaign(world, "pipeline-checklist") is None


def test_an_empty_slug_is_made_from_the_name_and_kept_unique(world):
    client = signed_in(world)
    for _ in range(2):
        post(client, "/admin/campaigns/new", {**FORM, "slug": "", "name": "Crème Brûlée: 10 Tips!", "action": "save"})
    with world.app_context():
        slugs = set(db.session.scalars(select(Campaign.slug)))
    assert slugs == {"execution-roadmap", "creme-brulee-10-tips", "creme-brulee-10-tips-2"}


@pytest.mark.parametrize(("name", "slug"), [("Execution Success Roadmap", "execution-success-roadmap"),
                                            ("  Q3 -- Pipeline / Review ", "q3-pipeline-review"),
                                            ("日本語", ""), ("x" * 100, "x" * 80)])
def test_slugify_keeps_ascii_letters_and_digits(name, slug):
    assert campaigns.slugify(name) == slug


def test_each_follow_up_shows_its_day_counted_from_the_request(world):
    data = {**FORM, "window": "", "steps-0-after": "2d", "steps-1-after": "3d", "action": "add-step"}
    page = text(post(signed_in(world), "/admin/campaigns/new", data))
    assert re.search(r'id="step-1-day"><strong>Day 2</strong>', page)
    assert re.search(r'id="step-2-day"><strong>Day 5</strong>', page)  # "after 3d" is day 5 here
    assert re.search(r'id="step-3-day"><strong>Day 8</strong>', page)  # the added step waits 3d


def test_the_preview_of_a_new_campaign_carries_the_files_chosen_for_it(world):
    client = signed_in(world)
    data = {**FORM, "csrf_token": token(client), "files": [(io.BytesIO(PDF), "checklist.pdf"),
                                                           (io.BytesIO(b""), "empty.pdf")]}
    frame = text(client.post("/admin/campaigns/preview", data=data, content_type="multipart/form-data"))
    assert frame.count("Attached: Pipeline-Checklist.pdf") == 1  # the magnet only; follow-ups carry none
    assert "Not attached: empty.pdf is empty." in frame
    assert _campaign(world, "pipeline-checklist") is None
