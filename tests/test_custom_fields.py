"""A contact's company and custom fields: imported from CSV columns, shown and edited on the contact page,
and in a campaign's texts as contact.company and contact.fields.NAME, down to the bytes the SMTP server got."""

from __future__ import annotations

import io
import re

import pytest
from jinja2.exceptions import SecurityError, UndefinedError
from sqlalchemy import select

from service import contacts, enrollments, mailer, queue
from service.campaigns import by_slug
from service.extensions import db
from service.models import Contact, Event
from tests.test_admin_support import post, signed_in, text
from tests.world import run_worker

CSV = """Email,Name,Company,Job Title,Favourite Colour,2nd thoughts,Notes
ann@acme.example,Ann Able, Acme Ltd ,Chief Executive,teal,x,call in May
bob@prospect.example,Bob,Prospect Inc,Buyer,,y,
"""


def _import(client, body: str, **form) -> str:
    upload = post(client, "/admin/contacts/import", {"file": (io.BytesIO(body.encode()), "people.csv")},
                  content_type="multipart/form-data")
    token = upload.headers["Location"].rsplit("/", 1)[1]
    checked = post(client, f"/admin/contacts/import/{token}", {"action": "start", **form})
    assert checked.status_code == 302, text(checked)
    return token


def test_extra_columns_become_custom_fields_and_the_company_is_kept(world):
    client = signed_in(world)
    with world.app_context():
        bob = contacts.upsert(db.session, "bob@prospect.example")
        bob.company, bob.fields = "Bob's Own", {"job_title": "Owner"}  # known: the import overwrites neither
        db.session.commit()
    upload = post(client, "/admin/contacts/import", {"file": (io.BytesIO(CSV.encode()), "people.csv")},
                  content_type="multipart/form-data")
    token = upload.headers["Location"].rsplit("/", 1)[1]
    mapping = text(client.get(f"/admin/contacts/import/{token}"))
    assert re.search(r'<select id="company"[^>]*>.*?<option selected value="2">Company</option>', mapping, re.S)
    ticked = re.findall(r'<input type="checkbox" name="custom" value="(\d+)" checked>', mapping)
    assert ticked == ["3", "4", "6"]  # "2nd thoughts" cannot name a field
    assert "→ contact.fields.job_title" in mapping and "<code>{{ contact.fields.job_title }}</code>" in mapping
    post(client, f"/admin/contacts/import/{token}", {"email": "0", "name": "1", "company": "2", "tags": "",
                                                     "custom": ["3", "4"], "action": "start"})
    check = text(client.get(f"/admin/contacts/import/{token}/check"))
    assert "Job Title → <code>contact.fields.job_title</code>" in check
    assert "Notes: not kept (not ticked)" in check and "2nd thoughts: not kept (&#39;2nd thoughts&#39; cannot" in check
    assert '<td data-label="Cell">company</td>' in check and '"Acme\xa0Ltd"' in check  # trimmed, and said
    with world.app_context():
        assert db.session.scalar(select(Contact).where(Contact.email == "ann@acme.example")) is None
    post(client, f"/admin/contacts/import/{token}/check")
    client.get(f"/admin/contacts/import/{token}/run")
    with world.app_context():
        ann = contacts.find(db.session, "ann@acme.example")
        assert (ann.company, ann.fields) == ("Acme Ltd", {"job_title": "Chief Executive", "favourite_colour": "teal"})
        bob = contacts.find(db.session, "bob@prospect.example")
        assert (bob.company, bob.fields) == ("Bob's Own", {"job_title": "Owner"})
        ann_id = ann.id
    page = text(client.get(f"/admin/contacts/{ann_id}"))
    assert "<dt>job_title</dt><dd>Chief Executive" in page and "<dt>Company</dt><dd>Acme Ltd</dd>" in page
    assert "Acme Ltd" in text(client.get("/admin/contacts?q=ann"))


def test_fields_are_edited_on_the_contact_page_and_a_bad_name_is_refused_with_the_reason(world):
    client = signed_in(world)
    with world.app_context():
        dana = contacts.upsert(db.session, "dana@prospect.example", "Dana")
        db.session.commit()
        url = f"/admin/contacts/{dana.id}"
    saved = post(client, f"{url}/details", {"company": "  Dana & Co ", "custom-0-name": "Job title",
                                           "custom-0-value": " Director ", "custom-1-name": "", "custom-1-value": "x"},
                 follow_redirects=True)
    assert "Saved: company Dana &amp; Co, 1 field(s)." in text(saved)
    for name, why in (("1st", "&#39;1st&#39; cannot name a field"), ("keys", "&#39;keys&#39; cannot name a field")):
        refused = post(client, f"{url}/details", {"company": "Other", "custom-0-name": name, "custom-0-value": "v"},
                       follow_redirects=True)
        assert f"Not saved: {why}" in text(refused)
    with world.app_context():
        dana = contacts.find(db.session, "dana@prospect.example")
        assert (dana.company, dana.fields) == ("Dana & Co", {"job_title": "Director"})
        saved = db.session.scalar(select(Event.detail).where(Event.kind == "details_saved"))
        assert saved == "company Dana & Co; job_title"
    form = text(client.get(url))
    assert 'name="custom-0-name" type="text" value="job_title"' in form and 'name="custom-1-name"' in form


def test_a_template_says_contact_fields_name_and_contact_company_in_the_bytes_the_server_got(world, sink):
    with world.app_context():
        campaign = by_slug(db.session, "execution-roadmap")
        campaign.magnet_text = ("Hi {{ contact.first_name }},\n\nAs {{ contact.fields.job_title }} at "
                                "{{ contact.company }}, page 4 is yours.{{ contact.fields.missing }}\n")
        campaign.magnet_html = None
        ann = Contact(email="ann@acme.example", name="Ann Able", domain="acme.example", company="Acme Ltd",
                      fields={"job_title": "Chief Executive"})
        db.session.add(ann)
        db.session.flush()
        outcome = enrollments.enrol(db.session, ann, campaign, None, world.config)
        db.session.commit()
        queue.queue_send(outcome.row)
    run_worker(world)
    [got] = sink.wait_for(1)
    assert b"As Chief Executive at Acme Ltd, page 4 is yours.\r\n" in got.data
    assert b"<p>Hi Ann,</p><p>As Chief Executive at Acme Ltd, page 4 is yours.</p>" in got.data


def test_templates_see_the_fields_read_only_and_only_names_they_can_read(world):
    with world.app_context():
        campaign = by_slug(db.session, "execution-roadmap")
        odd = Contact(email="odd@x.example", name="Odd", company="Odd\u202e Co",
                      fields={"job_title": "Boss\x00", "Bad Name": "x", "ok": "fine"})
        ctx = mailer.context(odd, campaign, world.config)
        assert dict(ctx["contact"]["fields"]) == {"job_title": "Boss", "ok": "fine"}
        assert ctx["contact"]["company"] == "Odd Co"
        assert mailer.render_content("{{ contact.fields.ok }}/{{ contact.fields['ok'] }}", ctx) == "fine/fine"
        with pytest.raises((SecurityError, UndefinedError, TypeError)):
            mailer.render_content("{{ contact.fields.update({'ok': 'changed'}) }}", ctx)
        with pytest.raises((SecurityError, UndefinedError, TypeError)):
            mailer.render_content("{% set _ = contact.fields.__setitem__('ok', 'x') %}", ctx)
        assert dict(ctx["contact"]["fields"])["ok"] == "fine"
        sample = mailer.context(mailer.sample_contact("pat@example.com"), campaign, world.config)
        assert (sample["contact"]["company"], dict(sample["contact"]["fields"])) == ("", {})


@pytest.mark.parametrize("label, name", [
    ("Job Title", "job_title"), ("Größe", "grosse"), ("e-mail 2", "e_mail_2"), ("_x_", "x")])
def test_a_label_names_a_field_the_way_a_template_can_read_it(label, name):
    assert contacts.field_name(label) == name


@pytest.mark.parametrize("label", ["", "2nd", "values", "a" * 41, "!!!"])
def test_a_label_that_cannot_be_a_field_name_is_refused(label):
    with pytest.raises(ValueError, match="cannot name a field"):
        contacts.field_name(label)
