"""CSV in and out of the contact list.

Import: the upload is stored in the instance folder, previewed with a column mapping,
validated in one pass (rejected rows kept with their reason), then written to the
database in bounded batches, one batch per request, so a big file shows progress and
no request runs long. Export: streamed in id order, with cells that a spreadsheet
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
from email.utils import parseaddr
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
_GUESSES = {"email": ("email", "mail", "address"), "name": ("name", "fullname", "contact"),
            "tags": ("tags", "tag", "labels", "label", "groups", "group")}
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
    started: bool = False
    finished: bool = False
    valid: int = 0
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
    (where / f"{state.token}.csv").write_text(text, encoding="utf-8")
    save(where, state)
    return state


def _forget_old(where: Path) -> None:
    cutoff = time.time() - KEEP_SECONDS
    for path in where.iterdir():
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def guess(headers: list[str]) -> dict:
    """Which column most likely holds each field, by its header ("E-Mail Address" → email)."""
    plain = [re.sub(r"[^a-z]", "", h.lower()) for h in headers]
    mapping: dict = {"email": 0, "name": None, "tags": None}
    for target, names in _GUESSES.items():
        exact = next((i for i, h in enumerate(plain) if h in names), None)
        partial = next((i for i, h in enumerate(plain) if any(n in h for n in names)), None)
        found = exact if exact is not None else partial
        if found is not None:
            mapping[target] = found
    return mapping


def _rows(where: Path, state: ImportState) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every non-empty data row."""
    with (where / f"{state.token}.csv").open(encoding="utf-8", newline="") as handle:
        reader = _reader(handle, state.delimiter)
        next(reader, None)
        for row in reader:
            if any(cell.strip() for cell in row):
                yield reader.line_num, row


def check(cells: list[str], mapping: dict) -> tuple[dict | None, str | None]:
    """A row as {email, name, tags}, or the reason it cannot be imported."""
    def cell(key: str) -> str:
        index = mapping.get(key)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    reason = next(filter(None, (_unfit(key, cell(key)) for key in ("email", "name", "tags"))), None)
    if reason:
        return None, reason
    raw = cell("email")
    name, address = parseaddr(raw)
    address = contacts.normalise(address)
    if not raw:
        return None, "no email address"
    if len(address) > 320 or not _ADDRESS.match(address):
        return None, f"{raw[:80]!r} is not an email address"
    name = cell("name") or name
    if len(name) > 200:
        return None, "the name is longer than 200 characters"
    if len(cell("tags")) > contacts.TAG_LENGTH:
        return None, f"the tags are longer than {contacts.TAG_LENGTH} characters"
    return {"email": address, "name": name, "tags": cell("tags")}, None


def _unfit(key: str, value: str) -> str | None:
    """Why a cell cannot be imported as it is: too long for any column, or with control characters."""
    if len(value) > CELL_MAX:
        return f"the {key} cell is {len(value):,} characters long (at most {CELL_MAX:,})"
    odd = _CONTROL.search(value)
    return f"the {key} cell contains a control character (U+{ord(odd[0]):04X})" if odd else None


def preview(where: Path, state: ImportState, mapping: dict, limit: int = 15) -> list[tuple[int, list[str], str | None]]:
    """The first rows with what would happen to each."""
    out = []
    for line, cells in _rows(where, state):
        out.append((line, cells, check(cells, mapping)[1]))
        if len(out) >= limit:
            break
    return out


def start(where: Path, state: ImportState, mapping: dict, tag_all: str) -> ImportState:
    """Validate every row once: valid ones queue for the batches, the others are reported with a reason."""
    seen: dict[str, int] = {}
    with (where / f"{state.token}.rows").open("w") as valid, (where / f"{state.token}.rejected").open("w") as bad:
        for line, cells in _rows(where, state):
            row, reason = check(cells, mapping)
            if row and row["email"] in seen:
                row, reason = None, f"duplicate of line {seen[row['email']]}"
            if row is None:
                bad.write(json.dumps({"line": line, "values": cells, "reason": reason}) + "\n")
                state.rejected += 1
                continue
            seen[row["email"]] = line
            valid.write(json.dumps({"line": line, **row}) + "\n")
            state.valid += 1
    state.mapping, state.tag_all, state.started = mapping, tag_all, True
    state.finished = state.valid == 0
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
    hashes = {address_hash(e): e for e in emails}
    held = dict(session.execute(
        select(Suppression.address_hash, Suppression.reason).where(Suppression.address_hash.in_(hashes))
    ).all())
    for row in batch:
        reason = held.get(address_hash(row["email"]))
        if reason:
            bad.write(json.dumps({"line": row["line"], "values": [row["email"], row["name"], row["tags"]],
                                  "reason": f"suppressed ({reason}): not added"}) + "\n")
            state.rejected += 1
            continue
        _upsert(session, known.get(row["email"]), row, state)


def _upsert(session: Session, contact: Contact | None, row: dict, state: ImportState) -> None:
    if contact is None:
        contact = Contact(email=row["email"], name=row["name"], domain=row["email"].rsplit("@", 1)[-1], tags="")
        session.add(contact)
        state.created += 1
    else:
        contact.name = contact.name or row["name"]  # a known name is never overwritten
        state.updated += 1
    contacts.add_tags(contact, f"{row['tags']},{state.tag_all}")


def rejected(where: Path, state: ImportState, limit: int | None = 200) -> list[dict]:
    """The rejected rows so far, with line numbers and reasons."""
    path = where / f"{state.token}.rejected"
    if not path.exists():
        return []
    with path.open() as handle:
        lines = handle if limit is None else (line for _, line in zip(range(limit), handle, strict=False))
        return [json.loads(line) for line in lines]


def rejected_csv(where: Path, state: ImportState) -> Iterator[str]:
    """Every rejected row with its line number and reason, as CSV."""
    yield _line(["line", "reason", *state.headers])
    for item in rejected(where, state, limit=None):
        yield _line([item["line"], item["reason"], *item["values"]])
