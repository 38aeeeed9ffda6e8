"""Admin benchmark: PostgreSQL with 100,000 contacts and 500,000 messages, timed through the Flask test client.

    .venv/bin/python -m tests.bench_admin                  # build, fill, time (prints p50/p95 per page)
    .venv/bin/python -m tests.bench_admin --requests 100   # more samples per page

Not collected by pytest (no test_ prefix). Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and
redis-server, as the test suite does. The database is created fresh and dropped at the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from flask_migrate import upgrade
from sqlalchemy import text

from service import ROOT, campaigns, create_app, users
from service.extensions import db
from tests.servers import RedisServer, postgres_database

CONTACTS = 100_000
INBOUND = 150_000  # with OUTBOUND: the 500,000 messages
OUTBOUND = 350_000
TARGET_MS = 100
NOW = datetime.now(UTC)
FIRST = ("Ann", "Bob", "Carla", "Dev", "Erin", "Femi", "Gus", "Hana", "Ivo", "Jo", "Kai", "Lena", "Mo", "Nia")
LAST = ("Smith", "Okafor", "Novak", "Garcia", "Chen", "Muller", "Rossi", "Khan", "Silva", "Berg", "Ito", "Dubois")
STATES = ["active"] * 20 + ["completed"] * 40 + ["replied"] * 10 + ["unsubscribed"] * 5 + ["bounced"] * 3 + \
    ["paused"] * 2 + ["stopped"] * 20
RAW = (b"From: someone@company.example\r\nTo: roadmap@acumen.example\r\nSubject: Roadmap please\r\n"
       b"Message-ID: <x@company.example>\r\n\r\n" + b"Please send me the Execution Success Roadmap. " * 10)

def _ago(rng: random.Random, days: int = 365) -> datetime:
    return NOW - timedelta(seconds=rng.randrange(days * 86400))


def _copy(cursor, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> int:
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _contacts(rng: random.Random) -> Iterator[tuple]:
    for i in range(1, CONTACTS + 1):
        created = _ago(rng)
        domain = f"company{i % 7000}.example"
        tags = ",".join(t for t, share in (("vip", 0.02), ("webinar", 0.1)) if rng.random() < share)
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}" if rng.random() < 0.9 else ""
        yield (i, f"user{i}@{domain}", name, domain, tags, rng.random() < 0.003, created,
               min(NOW, created + timedelta(days=rng.randrange(30))))


def _enrollments(rng: random.Random, campaign_ids: list[int]) -> Iterator[tuple]:
    for i in range(1, CONTACTS + 1):
        state = rng.choice(STATES)
        yield (i, i, rng.choice(campaign_ids), state, rng.randrange(4), "" if state == "active" else "bench",
               _ago(rng), NOW)


def _inbound(rng: random.Random) -> Iterator[tuple]:
    for i in range(1, INBOUND + 1):
        contact = i if i <= CONTACTS else rng.randrange(1, CONTACTS + 1)
        kind = "request" if i <= CONTACTS else rng.choice(("human", "auto_reply", "bounce", "bulk", "human"))
        state = "review" if rng.random() < 0.002 else ("quarantined" if rng.random() < 0.0005 else "processed")
        when = _ago(rng)
        yield (i, "INBOX", 1, i, RAW, "0" * 64, len(RAW), f"in{i}@company.example", when, when, state, kind,
               "execution-roadmap" if kind == "request" else None, '["bench"]', f"user{contact}@company.example",
               "Roadmap please", "Please send me the roadmap.", contact, 1, "", True, when)


def _outbound(rng: random.Random) -> Iterator[tuple]:
    for i in range(1, OUTBOUND + 1):
        contact = i if i <= CONTACTS else rng.randrange(1, CONTACTS + 1)
        kind, step = ("magnet", None) if i <= CONTACTS else ("followup", rng.randrange(1, 4))
        state = rng.choices(("sent", "pending", "cancelled", "failed", "unknown"), (90, 5, 4, 0.8, 0.2))[0]
        created = _ago(rng)
        sent = created if state == "sent" else None
        due = NOW + timedelta(hours=rng.randrange(1, 200)) if state == "pending" else created
        response = "250 2.0.0 Ok" if state == "sent" else ("550 5.1.1 User unknown" if state == "failed" else "")
        yield (i, f"bench:{i}", kind, contact, contact, None, step, f"user{contact}@company.example",
               "Re: Roadmap please", f"out{i}@acumen.example", None, "", due, state, 1, created, sent, response,
               "", RAW, created)


def _events(rng: random.Random) -> Iterator[tuple]:
    kinds = ("request", "magnet_sent", "followup_sent", "followup_sent", "replied", "unsubscribed", "bounce_soft",
             "enrollment_completed")
    for contact in range(1, CONTACTS + 1):
        start = _ago(rng)
        for n, kind in enumerate(kinds[: rng.randrange(2, len(kinds) + 1)]):
            yield contact, kind, "bench", start + timedelta(days=n * 3)


def fill(seed: int = 7) -> None:
    """Bulk-load the tables with COPY (a few hundred thousand rows a second)."""
    rng = random.Random(seed)
    campaign_ids = list(db.session.scalars(text("SELECT id FROM campaign")))
    connection = db.session.connection().connection.driver_connection
    with connection.cursor() as cursor:
        plan: list[tuple[str, tuple[str, ...], Callable[[], Iterator[tuple]]]] = [
            ("contact", ("id", "email", "name", "domain", "tags", "hot", "created_at", "last_activity_at"),
             lambda: _contacts(rng)),
            ("enrollment", ("id", "contact_id", "campaign_id", "state", "steps_sent", "stopped_reason", "created_at",
                            "updated_at"), lambda: _enrollments(rng, campaign_ids)),
            ("inbound_message", ("id", "mailbox", "uidvalidity", "uid", "raw", "sha256", "size", "message_id",
                                 "arrived_at", "stored_at", "state", "kind", "campaign_slug", "reasons",
                                 "from_address", "subject", "new_text", "contact_id", "attempts", "error", "acked",
                                 "processed_at"), lambda: _inbound(rng)),
            ("outbound", ("id", "key", "kind", "contact_id", "enrollment_id", "inbound_id", "step_position",
                          "to_address", "subject", "message_id", "in_reply_to", "\"references\"", "due_at", "state",
                          "attempts", "claimed_at", "sent_at", "smtp_response", "note", "raw", "created_at"),
             lambda: _outbound(rng)),
            ("event", ("contact_id", "kind", "detail", "created_at"), lambda: _events(rng)),
        ]
        for table, columns, rows in plan:
            started = time.perf_counter()
            count = _copy(cursor, table, columns, rows())
            print(f"  {table:16} {count:>9,} rows in {time.perf_counter() - started:5.1f} s", flush=True)
        for table in ("contact", "enrollment", "inbound_message", "outbound"):
            cursor.execute(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        cursor.execute("INSERT INTO mailbox_state (mailbox, uidvalidity, last_uid, first_connected_at, last_poll_at, "
                       "last_error) VALUES ('INBOX', 1, %s, now(), now(), '')", (INBOUND,))
    db.session.commit()


def _analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def _pages(rng: random.Random) -> dict[str, Callable[[], str]]:
    words = [n.lower() for n in FIRST + LAST]
    return {
        "dashboard": lambda: "/admin/",
        "list: latest": lambda: "/admin/contacts",
        "list: by address": lambda: "/admin/contacts?sort=email",
        "list: paused": lambda: "/admin/contacts?state=paused",
        "list: tag vip": lambda: "/admin/contacts?tag=vip",
        "list: campaign": lambda: "/admin/contacts?campaign=1&state=active&sort=newest",
        "search: name": lambda: f"/admin/contacts?q={rng.choice(words)}",
        "search: domain": lambda: f"/admin/contacts?q=company{rng.randrange(7000)}.example",
        "search: address": lambda: f"/admin/contacts?q=user{rng.randrange(1, CONTACTS)}@",
        "search+state": lambda: f"/admin/contacts?q={rng.choice(words)}&state=replied",
        "contact page": lambda: f"/admin/contacts/{rng.randrange(1, CONTACTS + 1)}",
    }


def measure(app, requests: int) -> dict[str, tuple[float, float, float]]:
    """p50, p95 and max server time (ms) per page, measured around the test client's request."""
    client = app.test_client()
    response = client.post("/admin/login", data={"email": "bench@acumen.example", "password": "bench password"})
    assert response.status_code == 302, response.status_code
    rng = random.Random(11)
    results = {}
    for name, url in _pages(rng).items():
        client.get(url())  # warm the cache and the connection
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            page = client.get(url())
            times.append((time.perf_counter() - started) * 1000)
            assert page.status_code == 200, (name, page.status_code)
        times.sort()
        results[name] = (statistics.median(times), times[int(0.95 * (len(times) - 1))], times[-1])
    return results


def report(title: str, results: dict[str, tuple[float, float, float]]) -> None:
    print(f"\n{title}\n  {'page':18} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, (p50, p95, worst) in results.items():
        flag = "" if p95 < TARGET_MS else f"  (over the {TARGET_MS} ms target)"
        print(f"  {name:18} {p50:8.1f} {p95:8.1f} {worst:8.1f}{flag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per page (default 60)")
    args = parser.parse_args()
    redis = RedisServer().start()
    try:
        with postgres_database("ft_bench") as url, tempfile.TemporaryDirectory() as instance:
            app = create_app({
                "INSTANCE_PATH": instance, "SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis.url,
                "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False, "BASE_URL": "http://127.0.0.1:5000",
                "MAIL_FROM": "Ken <roadmap@acumen.example>",
            })
            with app.app_context():
                started = time.perf_counter()
                upgrade(directory=str(ROOT / "service" / "migrations"))
                yaml_file = ROOT / "service" / "assets" / "execution-roadmap.yaml"
                text_ = yaml_file.read_text()
                campaigns.import_yaml(db.session, text_, yaml_file.parent)
                for slug in ("pipeline-checklist", "forecast-guide"):
                    campaigns.import_yaml(db.session, text_.replace("slug: execution-roadmap", f"slug: {slug}"),
                                          yaml_file.parent)
                users.create(db.session, "bench@acumen.example", "bench password")
                db.session.commit()
                print(f"Filling {url.rsplit('/', 1)[1]}:", flush=True)
                fill()
                _analyze(url)
                print(f"  ready in {time.perf_counter() - started:.0f} s", flush=True)
                report(f"Server time over {args.requests} requests per page:", measure(app, args.requests))
                db.session.remove()
                db.engine.dispose()
    finally:
        redis.cleanup()


if __name__ == "__main__":
    main()
