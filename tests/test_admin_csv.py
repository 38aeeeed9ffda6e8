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
    assert chosen == {"email": "1", "name": "0", "company": "", "tags": "2"}
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
    checked = post(client, f"/admin/contacts/import/{token}",
                   {"email": "1", "name": "0", "tags": "2", "tag_all": "Spring Fair", "action": "start"})
    assert checked.headers["Location"].endswith(f"/import/{token}/check")
    started = post(client, f"/admin/contacts/import/{token}/check")
    assert started.headers["Location"].endswith(f"/import/{token}/run")
    done = text(client.get(f"/admin/contacts/import/{token}/run"))
    assert "Imported people.csv" in done and 'http-equiv="refresh"' not in done
    counts = r"New contacts</dt><dd>2</dd>.*Known, completed</dt><dd>1</dd>.*Rejected</dt><dd>3</dd>"
    assert re.search(counts, done, re.S)
    assert "duplicate of row 2" in done and "suppressed (unsubscribed): not added" in done
    with world.app_context():
        ann = contacts.find(db.session, "ann@one.example")
        assert (ann.name, ann.tags) == ("Ann Able", "vip,webinar,spring-fair")
        assert contacts.find(db.session, "bob@prospect.example").name == "Bob Again"
        assert contacts.find(db.session, "zed@two.example").name == "Zed"
        assert contacts.find(db.session, "carol@prospect.example") is None
    report = list(csv.reader(io.StringIO(text(client.get(f"/admin/contacts/import/{token}/rejected.csv")))))
    assert report[0] == ["row", "reason", "Full Name", "E-Mail Address", "Groups"]
    assert [r[0] for r in report[1:]] == ["3", "5", "6"]


def test_a_big_file_runs_in_batches_and_the_page_reloads_until_done(world, monkeypatch):
    monkeypatch.setattr(csvio, "BATCH", 40)
    body = "email\n" + "".join(f"p{i}@bulk.example\n" for i in range(100))
    client = signed_in(world)
    token = _upload(client, body)
    post(client, f"/admin/contacts/import/{token}", {"email": "0", "name": "", "tags": "", "action": "start"})
    post(client, f"/admin/contacts/import/{token}/check")
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
    assert "suppressed (erased): not added" in text(client.get(f"/admin/contacts/import/{token}/check"))
    post(client, f"/admin/contacts/import/{token}/check")
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


def _start(client, token: str, mapping: dict) -> str:
    """Check the whole file, confirm, and run the import; returns the report."""
    post(client, f"/admin/contacts/import/{token}", {**mapping, "tags": "", "action": "start"})
    post(client, f"/admin/contacts/import/{token}/check")
    return text(client.get(f"/admin/contacts/import/{token}/run"))


def test_a_shift_jis_file_is_detected_and_its_names_imported_as_written(world):
    client = signed_in(world)
    body = "メール,氏名\nyamada@x.example,山田太郎\nsato@x.example,佐藤花子\n".encode("shift_jis")
    token = _upload(client, body)
    page = text(client.get(f"/admin/contacts/import/{token}"))
    assert "山田太郎" in page and "佐藤花子" in page
    assert re.search(r'<option value="cp932" selected>cp932 \(detected\)</option>', page)
    done = _start(client, token, {"email": "0", "name": "1"})
    assert re.search(r"New contacts</dt><dd>2</dd>", done)
    with world.app_context():
        assert contacts.find(db.session, "yamada@x.example").name == "山田太郎"


def test_the_file_can_be_read_again_in_another_encoding_and_a_wrong_one_is_said(world):
    client = signed_in(world)
    token = _upload(client, "Name;Email\nJosé Núñez;jose@es.example\n".encode("cp1252"))
    url = f"/admin/contacts/import/{token}"
    assert re.search(r'<option value="cp1252" selected>cp1252 \(detected\)</option>', text(client.get(url)))
    refused = post(client, url, {"action": "encoding", "encoding": "utf-8"}, follow_redirects=True)
    assert "Cannot read it that way: the file is not utf-8: byte 15 cannot be read as such." in text(refused)
    assert "José Núñez" in text(refused), "the file is still read as before"
    forged = post(client, url, {"action": "encoding", "encoding": "rot13"}, follow_redirects=True)
    assert "is not one of the encodings offered" in text(forged)
    token = _upload(client, "email,name\nyamada@x.example,山田太郎\n".encode("shift_jis"))
    url = f"/admin/contacts/import/{token}"
    garbled = text(post(client, url, {"action": "encoding", "encoding": "cp1252"}, follow_redirects=True))
    assert "山田太郎" not in garbled and "ŽR“c‘¾˜Y" in garbled and '<option value="cp1252" selected>' in garbled
    again = text(post(client, url, {"action": "encoding", "encoding": "cp932"}, follow_redirects=True))
    assert "山田太郎" in again


def test_a_file_in_no_encoding_at_all_is_refused_at_upload(world):
    client = signed_in(world)
    response = post(client, "/admin/contacts/import", {"file": (io.BytesIO(bytes(range(256)) * 8), "x.csv")},
                    content_type="multipart/form-data")
    assert response.status_code == 200 and "cannot tell which encoding the file is in" in text(response)


def test_a_huge_cell_or_a_control_character_rejects_its_row_with_the_reason(world):
    client = signed_in(world)
    body = ("email,name,notes\n"
            f"big@x.example,{'B' * 200_000},\n"          # past csv's own 128 KB field limit
            "nul@x.example,Nul\x00Name,\n"
            "esc@x.example,Esc\x1b[2JName,\n"
            "rlo@x.example,\u202eevil,\n"
            f"ok@x.example,Okay,{'n' * 150_000}\n")       # an unmapped column may be long
    token = _upload(client, body)
    page = text(client.get(f"/admin/contacts/import/{token}"))
    assert "rejected: the name cell is 200,000 characters long (at most 1,000)" in page
    assert len(page) < 50_000, "the preview shows a long cell cut short"
    done = _start(client, token, {"email": "0", "name": "1"})
    assert re.search(r"New contacts</dt><dd>1</dd>.*Rejected</dt><dd>4</dd>", done, re.S)
    for code in ("U+0000", "U+001B", "U+202E"):
        assert f"the name cell contains a control character ({code})" in done
    with world.app_context():
        assert [c.email for c in db.session.scalars(select(Contact))] == ["ok@x.example"]
    report = list(csv.reader(io.StringIO(text(client.get(f"/admin/contacts/import/{token}/rejected.csv")))))
    assert [r[0] for r in report[1:]] == ["2", "3", "4", "5"] and report[1][3] == "B" * 200_000


def test_the_encoding_is_what_spreadsheets_write_when_the_file_reads_cleanly_in_it_else_the_detectors_guess():
    german = "".join(f"p{i}@x.example,Jürgen Müller {i},tag\n" for i in range(20_000)).encode("cp1252")
    polish = "email,name\nm@x.pl,Zażółć Gęślą Jaźń\nk@x.pl,Łukasz Żółkiewski\n".encode("cp1250")
    assert [csvio.detect(d) for d in (german, polish, "é".encode())] == ["cp1252", "cp1250", "utf-8"]


def test_the_whole_file_is_checked_first_and_every_reject_reported_with_its_row_before_anything_is_written(world):
    rows = [f"p{n}@bulk.example" for n in range(2, 502)]  # spreadsheet rows 2 to 501
    rows[3 - 2], rows[480 - 2] = "not-an-address", "p480@bulk..example"
    client = signed_in(world)
    token = _upload(client, "email\n" + "\n".join(rows) + "\n")
    checked = post(client, f"/admin/contacts/import/{token}", {"email": "0", "name": "", "tags": "",
                                                               "action": "start"})
    assert checked.headers["Location"].endswith(f"/import/{token}/check")
    page = text(client.get(f"/admin/contacts/import/{token}/check"))
    assert re.search(r"New contacts</dt><dd>498</dd>.*Rejected</dt><dd>2</dd>", page, re.S)
    rejects = re.findall(r'<td data-label="Row">(\d+)</td><td data-label="Why">([^<]+)</td>', page)
    assert rejects == [("3", "&#39;not-an-address&#39; is not an email address"),
                       ("480", "&#39;p480@bulk..example&#39; is not an email address")]
    assert "Import 498 rows" in page
    with world.app_context():
        assert db.session.scalar(select(func.count(Contact.id))) == 0  # nothing until confirmed
    assert client.get(f"/admin/contacts/import/{token}/run").headers["Location"].endswith(f"/import/{token}")
    with world.app_context():
        assert db.session.scalar(select(func.count(Contact.id))) == 0  # the run page does not start it either
    post(client, f"/admin/contacts/import/{token}/check")
    done = text(client.get(f"/admin/contacts/import/{token}/run"))
    assert re.search(r"New contacts</dt><dd>498</dd>.*Rejected</dt><dd>2</dd>", done, re.S)
    with world.app_context():
        assert db.session.scalar(select(func.count(Contact.id))) == 498


def test_a_malformed_address_is_rejected_never_mended(world):
    client = signed_in(world)
    body = "email\nbob@ example.com\n\"Bob <bob @example.com>\"\nbob@example.com.\nok@example.com\n"
    token = _upload(client, body)
    post(client, f"/admin/contacts/import/{token}", {"email": "0", "name": "", "tags": "", "action": "start"})
    page = text(client.get(f"/admin/contacts/import/{token}/check"))
    assert "&#39;bob@ example.com&#39; is not an email address: it has a space in it" in page
    assert "&#39;Bob &lt;bob @example.com&gt;&#39; is not an email address: it has a space in it" in page
    assert "&#39;bob@example.com.&#39; is not an email address" in page
    post(client, f"/admin/contacts/import/{token}/check")
    client.get(f"/admin/contacts/import/{token}/run")
    with world.app_context():
        assert list(db.session.scalars(select(Contact.email))) == ["ok@example.com"]


def test_the_dry_run_says_exactly_what_it_changes(world):
    client = signed_in(world)
    body = ("email,name,tags\n"
            "  Ann@One.EXAMPLE ,Ann, VIP; Webinar 2024\n"
            "\"Zed Zulu <zed@two.example>\",,\n"
            "same@three.example,Same,vip\n")
    token = _upload(client, body)
    post(client, f"/admin/contacts/import/{token}", {"email": "0", "name": "1", "tags": "2", "action": "start"})
    page = text(client.get(f"/admin/contacts/import/{token}/check"))
    assert re.search(r"Rows changed</dt><dd>2</dd>", page)
    assert "email: trimmed, lower-cased: 1 row" in page and "name: taken from the address cell: 1 row" in page
    report = list(csv.reader(io.StringIO(text(client.get(f"/admin/contacts/import/{token}/changes.csv")))))
    assert report == [
        ["row", "cell", "as written", "as imported", "how"],
        ["2", "email", "  Ann@One.EXAMPLE ", "ann@one.example", "trimmed, lower-cased"],
        ["2", "tags", " VIP; Webinar 2024", "vip, webinar-2024", "lower case, dashes for spaces, once each"],
        ["3", "email", "Zed Zulu <zed@two.example>", "zed@two.example", "name and address split"],
        ["3", "name", "Zed Zulu <zed@two.example>", "Zed Zulu", "taken from the address cell"],
    ]
    post(client, f"/admin/contacts/import/{token}/check")
    client.get(f"/admin/contacts/import/{token}/run")
    with world.app_context():
        ann = contacts.find(db.session, "ann@one.example")
        assert (ann.email, ann.tags) == ("ann@one.example", "vip,webinar-2024")
        assert contacts.find(db.session, "same@three.example").tags == "vip"  # unchanged, so not reported
