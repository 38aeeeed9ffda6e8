"""CSV in and out of the contact list.

Import: the upload is stored in the instance folder, previewed with a column mapping,
then checked whole in a dry run that writes nothing (every rejected row kept with its
row number and reason, every change made to a cell said), then, once the admin
confirms, written to the database in bounded batches, one batch per request, so a big
file shows progress and no request runs long. Columns beside the address, name, tags
and company become the contact's custom fields. Export: streamed in id order, with cells that a spreadsheet
would run as a formula defused (OWASP "CSV injection").
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import fcntl
import io
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import charset_normalizer
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from .. import contacts, roster
from ..models import Campaign, Contact, Suppression, address_hash

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXPORT_COLUMNS = ("email", "name", "domain", "tags", "hot", "sequences", "created_at", "last_activity_at")
BATCH = 1000
KEEP_SECONDS = 7 * 86400
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_ADDRESS = re.compile(r"^[^@\s\"<>,;()]+@[^@\s\"<>,;()]+\.[^@\s\"<>,;()]+$")
# Guessed in this order, each from the columns left: "Company Name" is the company, not the name.
_GUESSES = {"email": ("email", "mail", "address"),
            "company": ("company", "organisation", "organization", "employer", "firm", "business"),
            "name": ("name", "fullname", "contact"),
            "tags": ("tags", "tag", "labels", "label", "groups", "group")}
MAPPED = ("email", "name", "tags", "company")
# "Ann <ann@x>": a name and an address in one cell, as mail clients export them.
_NAMED = re.compile(r"^(?P<name>[^<>]*)<(?P<address>[^<>]*)>$")
SHOWN = 500  # rejected or changed rows listed on a page; the CSV downloads have them all
# Offered beside the detected encoding: what spreadsheets in the West and in Japan save as "CSV".
ENCODINGS = ("utf-8", "windows-1252", "shift_jis")
_SPREADSHEETS = ("cp1252", "cp932")
CELL_MAX = 1000  # longer is no name, address or tag list; a row with one is rejected
# csv's own limit (128 KB) raises in the middle of the file; a long cell is a reason to reject its row.
FIELD_LIMIT = 64 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class CsvError(ValueError):
    """The upload cannot be imported; the message says why."""


# --------------------------------------------------------------------------- export


def safe_cell(value: object) -> str:
    """A cell that Excel, LibreOffice and Sheets show as text, never run as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def export_rows(session: Session, filters: roster.Filters) -> Iterator[str]:
    """The matching contacts as CSV text, a batch at a time (bounded memory at any size)."""
    names = dict(session.execute(select(Campaign.id, Campaign.slug)).all())
    session.rollback()
    yield _line(EXPORT_COLUMNS)
    last = 0
    while True:
        query = roster.matching(filters).options(selectinload(Contact.enrollments))
        batch = list(session.scalars(query.where(Contact.id > last).order_by(Contact.id).limit(BATCH)))
        if not batch:
            return
        text = "".join(_line(_export(c, names)) for c in batch)
        last = batch[-1].id
        session.rollback()  # read-only: end the transaction (and SQLite's lock) before the client reads
        session.expunge_all()  # keep the identity map from growing with the whole table
        yield text


def _export(c: Contact, names: dict[int, str]) -> tuple:
    sequences = ";".join(f"{names.get(e.campaign_id, e.campaign_id)}:{e.state}" for e in c.enrollments)
    return (c.email, c.name, c.domain, c.tags, "yes" if c.hot else "no", sequences,
            c.created_at.isoformat(), c.last_activity_at.isoformat())


def _line(values) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([safe_cell(v) for v in values])
    return out.getvalue()


# --------------------------------------------------------------------------- import: state on disk


@dataclass
class ImportState:
    """One import's progress, kept as JSON next to the upload."""

    token: str
    filename: str
    headers: list[str]
    delimiter: str
    total: int
    encoding: str = "utf-8"
    detected: str = "utf-8"
    created_at: float = field(default_factory=time.time)
    mapping: dict = field(default_factory=dict)
    tag_all: str = ""
    checked: bool = False  # the dry run is done: the admin may confirm
    started: bool = False  # confirmed: the batches write
    finished: bool = False
    valid: int = 0
    new: int = 0  # the dry run: rows that would add a contact …
    known: int = 0  # … and rows that would complete a known one
    changed: int = 0  # rows with a cell the import changes (trimmed, lower-cased, …)
    change_counts: dict = field(default_factory=dict)
    left_out: list = field(default_factory=list)  # [header, why] of columns not kept as fields
    offset: int = 0
    processed: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0

    @property
    def percent(self) -> int:
        return 100 if self.finished or not self.valid else int(100 * self.processed / self.valid)


def folder(instance_path: str) -> Path:
    """Where uploads and their progress live: <instance>/imports."""
    path = Path(instance_path) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load(where: Path, token: str) -> ImportState | None:
    """An import's state; None for an unknown or malformed token (never a path)."""
    if not _TOKEN.match(token) or not (where / f"{token}.json").exists():
        return None
    return ImportState(**json.loads((where / f"{token}.json").read_text()))


def save(where: Path, state: ImportState) -> None:
    """Write the state atomically (a reload never reads half a file)."""
    partial = where / f".{state.token}.json.part"
    partial.write_text(json.dumps(asdict(state)))
    partial.replace(where / f"{state.token}.json")


def detect(data: bytes) -> str:
    """The upload's encoding: UTF-8 if it reads as UTF-8, else charset-normalizer's guess."""
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # What spreadsheets write, if the file reads cleanly in it: Western text reads about as well in
    # several code pages, and the detector alone once picked Baltic cp775 for a German list.
    best = charset_normalizer.from_bytes(data, cp_isolation=list(_SPREADSHEETS)).best()
    best = best or charset_normalizer.from_bytes(data).best()
    if best is None:
        raise CsvError("cannot tell which encoding the file is in: save it as CSV UTF-8 and upload it again")
    return codecs.lookup(best.encoding).name


def encodings(state: ImportState) -> list[str]:
    """What the mapping page offers to read the file as: the detected encoding first."""
    return list(dict.fromkeys(codecs.lookup(e).name for e in (state.detected, *ENCODINGS)))


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode("utf-8-sig" if encoding == "utf-8" else encoding)  # Excel starts UTF-8 with a BOM
    except UnicodeDecodeError as exc:
        raise CsvError(f"the file is not {encoding}: byte {exc.start + 1} cannot be read as such") from exc


def _reader(lines, delimiter: str):
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    return csv.reader(lines, delimiter=delimiter)


def store_upload(where: Path, filename: str, data: bytes) -> ImportState:
    """Keep an uploaded CSV (as it came, and as UTF-8) and read its header; old imports are cleaned up."""
    _forget_old(where)
    encoding = detect(data)
    state = ImportState(token=secrets.token_hex(16), filename=Path(filename).name[:200], headers=[],
                        delimiter=",", total=0, encoding=encoding, detected=encoding)
    (where / f"{state.token}.upload").write_bytes(data)
    return _read(where, state, encoding)


def recode(where: Path, state: ImportState, encoding: str) -> ImportState:
    """Read the upload again as `encoding` (one of `encodings(state)`), when the guess was wrong."""
    if encoding not in encodings(state):
        raise CsvError(f"{encoding!r} is not one of the encodings offered")
    if not (where / f"{state.token}.upload").exists():
        raise CsvError("this upload is older than the choice of encoding: upload the file again")
    return _read(where, state, encoding)


def _read(where: Path, state: ImportState, encoding: str) -> ImportState:
    text = _decode((where / f"{state.token}.upload").read_bytes(), encoding)
    try:
        delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    rows = _reader(io.StringIO(text, newline=""), delimiter)
    headers = [h.strip()[:200] for h in next(rows, [])]
    if not any(headers):
        raise CsvError("the file is empty: the first row must name the columns")
    state.total = sum(1 for row in rows if any(cell.strip() for cell in row))
    state.headers, state.delimiter, state.encoding, state.mapping = headers, delimiter, encoding, guess(headers)
    state.checked = False  # read anew: an earlier dry run no longer says what would be imported
    (where / f"{state.token}.csv").write_text(text, encoding="utf-8")
    save(where, state)
    return state


def _forget_old(where: Path) -> None:
    cutoff = time.time() - KEEP_SECONDS
    for path in where.iterdir():
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def guess(headers: list[str]) -> dict:
    """Which column most likely holds each field, by its header ("E-Mail Address" → email); every other
    column becomes a custom field."""
    plain = [re.sub(r"[^a-z]", "", h.lower()) for h in headers]
    mapping: dict = {}
    for target, names in _GUESSES.items():
        free = [(i, h) for i, h in enumerate(plain) if i not in mapping.values()]
        exact = next((i for i, h in free if h in names), None)
        partial = next((i for i, h in free if any(n in h for n in names)), None)
        mapping[target] = exact if exact is not None else partial
    if mapping["email"] is None:
        mapping["email"] = 0 if 0 not in mapping.values() else None
    mapping["fields"] = field_columns(headers, mapping)[0]
    return mapping


def field_columns(headers: list[str], mapping: dict, chosen: set[int] | None = None) -> tuple[list, list]:
    """The columns kept as custom fields, as [index, field name], and those left out, as [header, why]:
    of the columns not mapped to the address, name, tags or company, the `chosen` ones (default: all)."""
    mapped = {mapping.get(key) for key in MAPPED}
    kept: list = []
    left: list = []
    for index, header in enumerate(headers):
        if index in mapped or (chosen is not None and index not in chosen):
            continue
        why = _unnameable(header, [name for _, name in kept])
        if why:
            left.append([header, why])
        else:
            kept.append([index, contacts.field_name(header)])
    return kept, left


def _unnameable(header: str, taken: list[str]) -> str | None:
    try:
        name = contacts.field_name(header)
    except ValueError as exc:
        return str(exc)
    if name in taken:
        return f"another column gives the same field name, {name!r}"
    return f"a contact has at most {contacts.FIELDS_MAX} fields" if len(taken) >= contacts.FIELDS_MAX else None


def read_mapping(headers: list[str], picked: dict[str, str], ticked: list[str]) -> dict:
    """The mapping a form sent: a column per contact field (a forged number is "not mapped", which the
    form then refuses with a message) and the ticked columns kept as custom fields."""
    mapping: dict = {key: int(v) if v.isdigit() and int(v) < len(headers) else None for key, v in picked.items()}
    mapping["fields"] = field_columns(headers, mapping, {int(t) for t in ticked if t.isdigit()})[0]
    return mapping


def _rows(where: Path, state: ImportState) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of every non-empty data row, numbered as a spreadsheet numbers them: the header
    is row 1, and a cell with line breaks in it is still one row."""
    with (where / f"{state.token}.csv").open(encoding="utf-8", newline="") as handle:
        reader = _reader(handle, state.delimiter)
        next(reader, None)
        for number, row in enumerate(reader, start=2):
            if any(cell.strip() for cell in row):
                yield number, row


def check(cells: list[str], mapping: dict) -> tuple[dict | None, str | None]:
    """A row as {email, name, tags, company, fields, changes}, or the reason it cannot be imported.

    Nothing is guessed: an address with a space in it (bob@ example.com) rejects the row instead of being
    closed up. `changes` says what was made of each cell that is not stored as it was (trimmed, lower-cased).
    """
    cells_of = {key: _cell(cells, mapping.get(key)) for key in MAPPED}
    values = {name: _cell(cells, index) for index, name in mapping.get("fields") or []}
    unfit = (_unfit(key, value.strip()) for key, value in (*cells_of.items(), *values.items()))
    reason = next(filter(None, unfit), None)
    if reason:
        return None, reason
    address = _address(cells_of["email"])
    if isinstance(address, str):
        return None, address
    email, named, changes = address
    try:
        row = {"email": email, **_others(cells_of, values, named, changes), "changes": changes}
    except ValueError as exc:
        return None, str(exc)
    return row, None


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index] if index is not None and index < len(cells) else ""


def _address(cell: str) -> tuple[str, str, list[dict]] | str:
    """(address, name written beside it, changes) from an address cell, or why it is not an address."""
    value = cell.strip()
    how = ["trimmed"] if value != cell else []
    named = _NAMED.match(value)
    name = ""
    if named:
        name, value = named["name"].strip().strip('"').strip(), named["address"]
        how.append("name and address split")
    if not value:
        return "no email address"
    shown = f"{cell.strip()[:80]!r} is not an email address"
    if any(c.isspace() for c in value):
        return f"{shown}: it has a space in it"
    local, _, domain = value.rpartition("@")
    if len(value) > 320 or not _ADDRESS.match(value) or "" in (*local.split("."), *domain.split(".")):
        return shown
    email = contacts.normalise(value)
    if email != value:
        how.append("lower-cased")
    return email, name, [_change("email", cell, email, how)] if how else []


def _others(cells_of: dict[str, str], values: dict[str, str], named: str, changes: list[dict]) -> dict:
    """The name, tags, company and custom fields of a row, each change noted; raises ValueError."""
    name = _trimmed("name", cells_of["name"], changes)
    if not name and named:
        name = named
        changes.append(_change("name", cells_of["email"], named, ["taken from the address cell"]))
    if len(name) > 200:
        raise ValueError("the name is longer than 200 characters")
    tags = _tags(cells_of["tags"], changes)
    company = contacts.clean_text("company", _trimmed("company", cells_of["company"], changes), contacts.COMPANY_LENGTH)
    fields = {key: contacts.clean_text(f"{key} value", _trimmed(key, value, changes), contacts.FIELD_VALUE_LENGTH)
              for key, value in values.items()}
    return {"name": name, "tags": tags, "company": company, "fields": {k: v for k, v in fields.items() if v}}


def _trimmed(what: str, value: str, changes: list[dict]) -> str:
    kept = value.strip()
    if kept != value:
        changes.append(_change(what, value, kept, ["trimmed"]))
    return kept


def _tags(value: str, changes: list[dict]) -> str:
    written = [t.strip() for t in re.split(r"[,;]", value) if t.strip()]
    tags = contacts.normalise_tags(value)
    joined = ",".join(tags)
    if len(joined) > contacts.TAG_LENGTH:
        raise ValueError(f"the tags are longer than {contacts.TAG_LENGTH} characters")
    if tags != written:
        changes.append(_change("tags", value, ", ".join(tags), ["lower case, dashes for spaces, once each"]))
    return joined


def _change(cell: str, before: str, after: str, how: list[str]) -> dict:
    return {"cell": cell, "from": before[:200], "to": after[:200], "how": how}


def _unfit(key: str, value: str) -> str | None:
    """Why a cell cannot be imported as it is: too long for any column, or with control characters."""
    if len(value) > CELL_MAX:
        return f"the {key} cell is {len(value):,} characters long (at most {CELL_MAX:,})"
    odd = _CONTROL.search(value)
    return f"the {key} cell contains a control character (U+{ord(odd[0]):04X})" if odd else None


def preview(where: Path, state: ImportState, mapping: dict, limit: int = 15) -> list[tuple[int, list[str], str | None]]:
    """The first rows with what would happen to each (the dry run checks them all)."""
    out = []
    for line, cells in _rows(where, state):
        out.append((line, cells, check(cells, mapping)[1]))
        if len(out) >= limit:
            break
    return out


def dry_run(session: Session, where: Path, state: ImportState, mapping: dict, tag_all: str) -> ImportState:
    """Check every row, and compare it with the contacts and the suppression list, writing nothing to the
    database: valid rows queue for the batches; rejects and changes are kept with their row numbers."""
    _forget_check(state, mapping, tag_all)
    seen: dict[str, int] = {}
    pending: list[tuple[int, list[str], dict | None, str | None]] = []
    names = ("rows", "rejected", "changes")
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context((where / f"{state.token}.{n}").open("w")) for n in names]
        for number, cells in _rows(where, state):
            row, reason = check(cells, mapping)
            if row and row["email"] in seen:
                row, reason = None, f"duplicate of row {seen[row['email']]}"
            if row:
                seen[row["email"]] = number
            pending.append((number, cells, row, reason))
            if len(pending) >= BATCH:
                _compare(session, pending, state, *files)
                pending = []
        _compare(session, pending, state, *files)
    state.checked = True
    return state


def _forget_check(state: ImportState, mapping: dict, tag_all: str) -> None:
    """A second dry run (after another mapping) starts from nothing."""
    state.mapping, state.tag_all = mapping, tag_all
    fieldable, unusable = field_columns(state.headers, mapping)
    chosen = {index for index, _ in mapping.get("fields") or []}
    state.left_out = [[state.headers[i], "not ticked"] for i, _ in fieldable if i not in chosen] + unusable
    state.valid = state.new = state.known = state.changed = state.rejected = 0
    state.change_counts = {}


def _compare(session: Session, pending: list, state: ImportState, valid, bad, changed) -> None:
    """Sort a batch of checked rows, in their order: rejected, suppressed (never re-added), new or known."""
    emails = [row["email"] for _, _, row, _ in pending if row]
    known = set(session.scalars(select(Contact.email).where(Contact.email.in_(emails))))
    held = _held(session, emails)
    for number, cells, row, reason in pending:
        reason = reason or (f"suppressed ({held[row['email']]}): not added" if row["email"] in held else None)
        if reason:
            bad.write(json.dumps({"line": number, "values": cells, "reason": reason}) + "\n")
            state.rejected += 1
            continue
        changes = row.pop("changes")
        valid.write(json.dumps({"line": number, **row}) + "\n")
        state.valid += 1
        state.known, state.new = (state.known + 1, state.new) if row["email"] in known else (state.known, state.new + 1)
        if changes:
            changed.write(json.dumps({"line": number, "changes": changes}) + "\n")
            state.changed += 1
            for change in changes:
                key = f"{change['cell']}: {', '.join(change['how'])}"
                state.change_counts[key] = state.change_counts.get(key, 0) + 1


def _held(session: Session, emails: list[str]) -> dict[str, str]:
    """The suppression reason of each address that is suppressed (looked up by hash: erased ones too)."""
    hashes = {address_hash(e): e for e in emails}
    rows = session.execute(
        select(Suppression.address_hash, Suppression.reason).where(Suppression.address_hash.in_(hashes))
    )
    return {hashes[key]: reason for key, reason in rows}


def confirm(state: ImportState) -> ImportState:
    """The admin read the dry run and says write it."""
    if not state.checked:
        raise CsvError("check the whole file first")
    state.started, state.finished = True, state.valid == 0
    return state


@contextlib.contextmanager
def batch_lock(where: Path, token: str) -> Iterator[bool]:
    """True if this request may run the next batch (a reload during a batch just shows progress)."""
    with (where / f"{token}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_batch(session: Session, where: Path, state: ImportState, size: int | None = None) -> ImportState:
    """Write the next `size` valid rows: new contacts created, known ones completed; never commits."""
    size = size or BATCH
    batch, bad = [], (where / f"{state.token}.rejected").open("a")
    with (where / f"{state.token}.rows").open("rb") as rows, bad:
        rows.seek(state.offset)
        while len(batch) < size and (raw := rows.readline()):
            batch.append(json.loads(raw))
        state.offset = rows.tell()
        state.finished = not rows.readline()
        _write(session, batch, state, bad)
    state.processed += len(batch)
    return state


def _write(session: Session, batch: list[dict], state: ImportState, bad) -> None:
    emails = [r["email"] for r in batch]
    known = {c.email: c for c in session.scalars(select(Contact).where(Contact.email.in_(emails)))}
    held = _held(session, emails)  # again: someone may have unsubscribed since the dry run
    for row in batch:
        if row["email"] in held:
            bad.write(json.dumps({"line": row["line"], "values": [row["email"], row["name"], row["tags"]],
                                  "reason": f"suppressed ({held[row['email']]}): not added"}) + "\n")
            state.rejected += 1
            continue
        _upsert(session, known.get(row["email"]), row, state)


def _upsert(session: Session, contact: Contact | None, row: dict, state: ImportState) -> None:
    if contact is None:
        contact = Contact(email=row["email"], name=row["name"], domain=row["email"].rsplit("@", 1)[-1], tags="",
                          company=row.get("company") or None, fields=row.get("fields") or {})
        session.add(contact)
        state.created += 1
    else:
        contact.name = contact.name or row["name"]  # what is known is never overwritten
        contacts.complete(contact, row.get("company") or "", row.get("fields") or {})
        state.updated += 1
    contacts.add_tags(contact, f"{row['tags']},{state.tag_all}")


def rejected(where: Path, state: ImportState, limit: int | None = SHOWN) -> list[dict]:
    """The rejected rows so far, with row numbers and reasons."""
    return _jsonl(where / f"{state.token}.rejected", limit)


def changes(where: Path, state: ImportState, limit: int | None = SHOWN) -> list[dict]:
    """The rows the dry run changed, each with what it made of which cell."""
    return _jsonl(where / f"{state.token}.changes", limit)


def _jsonl(path: Path, limit: int | None) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as handle:
        lines = handle if limit is None else (line for _, line in zip(range(limit), handle, strict=False))
        return [json.loads(line) for line in lines]


def rejected_csv(where: Path, state: ImportState) -> Iterator[str]:
    """Every rejected row with its row number and reason, as CSV."""
    yield _line(["row", "reason", *state.headers])
    for item in rejected(where, state, limit=None):
        yield _line([item["line"], item["reason"], *item["values"]])


def changes_csv(where: Path, state: ImportState) -> Iterator[str]:
    """Every change the import makes to a cell, one per line, as CSV."""
    yield _line(["row", "cell", "as written", "as imported", "how"])
    for item in changes(where, state, limit=None):
        for change in item["changes"]:
            yield _line([item["line"], change["cell"], change["from"], change["to"], ", ".join(change["how"])])


def imported(where: Path, state: ImportState, offset: int, size: int) -> tuple[list[str], int | None]:
    """The addresses of the next `size` rows an import wrote, from byte `offset` of its queue, and the
    offset after them (None at the end): whom "enrol this import" is for."""
    emails = []
    with (where / f"{state.token}.rows").open("rb") as rows:
        rows.seek(offset)
        while len(emails) < size and (raw := rows.readline()):
            emails.append(json.loads(raw)["email"])
        after = rows.tell()
        return emails, (after if rows.readline() else None)
