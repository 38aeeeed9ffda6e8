"""CSV import: mapping and preview, validation with reasons, batches with progress, nothing re-added."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import func, select

from service import contacts
from service.admin import csvio
from service.extensions import db
from service.models import Contact
from tests.test_admin_support import post, signed_in, text

CSV = """Full Name,E-Mail Address,Groups
Ann Able,ann@one.example,"vip, webinar"
,not an address,
Bob Again,bob@prospect.example,
Dup,ANN@one.example,
Carol,carol@prospect.example,
Zed,Zed <zed@two.example>,
"""


def _upload(client, body: str | bytes, name: str = "people.csv") -> str:
    raw = body if isinstance(body, bytes) else body.encode()
    response = post(client, "/admin/contacts/import", {"file": (io.BytesIO(raw), name)},
                    content_type="multipart/form-data")
    assert response.status_code == 302, text(response)
    return response.headers["Location"].rsplit("/", 1)[1]


def test_the_columns_are_guessed_and_the_preview_says_what_would_happen(world):
    client = signed_in(world)
    token = _upload(client, CSV)
    page = text(client.get(f"/admin/contacts/import/{token}"))
    chosen = {name: re.search(r'<option selected value="(\d*)"', options).group(1)
              for name, options in re.findall(r'<select id="(\w+)"[^>]*>(.*?)</select>', page, re.S)}
    assert chosen == {"email": "1", "name": "0", "tags": "2"}
    assert "6 data rows found" in page
    assert "rejected: no email address" not in page  # line 3 has a (bad) value
    assert "rejected: &#39;not an address&#39; is not an email address" in page
    with world.app_context():
        assert db.session.scalar(select(func.count(Contact.id))) == 0  # a preview writes nothing


def test_a_different_mapping_can_be_checked_before_importing(world):
    client = signed_in(world)
    token = _upload(client, CSV)
    page = text(post(client, f"/admin/contacts/import/{token}",
                     {"email": "0", "name": "", "tags": "", "action": "check"}))
    assert page.count("rejected:") == 6  # names are not addresses


def test_an_import_creates_completes_and_reports_every_rejected_row(world):
    with world.app_context():
        contacts.upsert(db.session, "bob@prospect.example", "")  # known, without a name yet
        contacts.suppress(db.session, "carol@prospect.example", "unsubscribed")
        db.session.commit()
    client = signed_in(world)
    token = _upload(client, CSV)
    started = post(client, f"/admin/contacts/import/{token}",
                   {"email": "1", "name": "0", "tags": "2", "tag_all": "Spring Fair", "action": "start"})
    assert started.headers["Location"].endswith(f"/import/{token}/run")
    done = text(client.get(f"/admin/contacts/import/{token}/run"))
    assert "Imported people.csv" in done and 'http-equiv="refresh"' not in done
    counts = r"New contacts</dt><dd>2</dd>.*Known, completed</dt><dd>1</dd>.*Rejected</dt><dd>3</dd>"
    assert re.search(counts, done, re.S)
    assert "duplicate of line 2" in done and "suppressed (unsubscribed): not added" in done
    with world.app_context():
        ann = contacts.find(db.session, "ann@one.example")
        assert (ann.name, ann.tags) == ("Ann Able", "vip,webinar,spring-fair")
        assert contacts.find(db.session, "bob@prospect.example").name == "Bob Again"
        assert contacts.find(db.session, "zed@two.example").name == "Zed"
        assert contacts.find(db.session, "carol@prospect.example") is None
    report = list(csv.reader(io.StringIO(text(client.get(f"/admin/contacts/import/{token}/rejected.csv")))))
    assert report[0] == ["line", "reason", "Full Name", "E-Mail Address", "Groups"]
    assert [r[0] for r in report[1:]] == ["3", "5", "6"]


def test_a_big_file_runs_in_batches_and_the_page_reloads_until_done(world, monkeypatch):
    monkeypatch.setattr(csvio, "BATCH", 40)
    body = "email\n" + "".join(f"p{i}@bulk.example\n" for i in range(100))
    client = signed_in(world)
    token = _upload(client, body)
    post(client, f"/admin/contacts/import/{token}", {"email": "0", "name": "", "tags": "", "action": "start"})
    progress = [text(client.get(f"/admin/contacts/import/{token}/run")) for _ in range(3)]
    assert ['http-equiv="refresh"' in p for p in progress] == [True, True, False]
    assert re.search(r"<progress[^>]*value=\"40\"", progress[0])
    assert "Imported people.csv" in progress[2]
    with world.app_context():
        assert db.session.scalar(select(func.count(Contact.id))) == 100
    assert "Imported" in text(client.get(f"/admin/contacts/import/{token}/run"))  # reloading again is harmless


def test_an_erased_address_is_not_re_added_by_an_import(world):
    client = signed_in(world)
    with world.app_context():
        gone = contacts.upsert(db.session, "gone@x.example", "Gone")
        contacts.erase(db.session, gone)
        db.session.commit()
    token = _upload(client, "email\ngone@x.example\n")
    post(client, f"/admin/contacts/import/{token}", {"email": "0", "name": "", "tags": "", "action": "start"})
    assert "suppressed (erased): not added" in text(client.get(f"/admin/contacts/import/{token}/run"))


def test_semicolons_and_windows_encodings_are_read(world):
    client = signed_in(world)
    token = _upload(client, "Name;Email\nJosé Núñez;jose@es.example\n".encode("cp1252"))  # real cp1252 bytes
    page = text(client.get(f"/admin/contacts/import/{token}"))
    assert "José Núñez" in page


def test_an_unknown_or_forged_token_is_404(world):
    client = signed_in(world)
    assert client.get("/admin/contacts/import/" + "a" * 32).status_code == 404
    assert client.get("/admin/contacts/import/..passwd").status_code == 404  # one path segment: the token check says no


def test_a_forged_column_number_is_refused_not_a_500(world):
    client = signed_in(world)
    token = _upload(client, "email\nx@y.example\n")
    response = post(client, f"/admin/contacts/import/{token}", {"email": "zero; drop", "action": "start"})
    assert response.status_code == 200


def test_formula_cells_are_prefixed_with_a_quote():
    assert [csvio.safe_cell(v) for v in ("=1+1", "+1", "-1", "@x", "\tx", "\rx", "a=b", None, 5)] == [
        "'=1+1", "'+1", "'-1", "'@x", "'\tx", "'\rx", "a=b", "", "5",
    ]
