"""Compose and serialise: one magnet with its PDF and one follow-up, built and turned into final bytes.

    .venv/bin/python -m tests.bench_compose              # prints µs per message, with and without DKIM
    .venv/bin/python -m tests.bench_compose --count 2000

Not collected by pytest (no test_ prefix). Needs nothing running: SQLite in a temporary folder and
no Redis (composing touches neither). The DKIM key is a fresh 2048-bit RSA key from openssl.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from flask_migrate import upgrade

from service import ROOT, campaigns, create_app, mailer, outbound
from service.extensions import db
from service.models import Contact, Outbound

EXCHANGE_ID = "PH0PR11MB5095C0FFEE1234567890ABCDEF1234@PH0PR11MB5095.namprd11.prod.outlook.com"


def _key(folder: Path) -> str:
    path = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", path, "2048"], check=True, capture_output=True)
    return path.read_text()


def _rows(settings: dict) -> tuple[Outbound, Outbound]:
    domain = settings["MAIL_DOMAIN"]
    magnet = Outbound(id=1, kind="magnet", to_address="bob@prospect.example", subject="Re: Roadmap please",
                      message_id=outbound.new_message_id(domain), in_reply_to=EXCHANGE_ID,
                      references=f"<{EXCHANGE_ID}>", thread_index=outbound.thread_index(None))
    follow_up = Outbound(id=2, kind="followup", to_address=magnet.to_address, subject=magnet.subject,
                         message_id=outbound.new_message_id(domain), in_reply_to=magnet.message_id,
                         references=f"<{EXCHANGE_ID}> <{magnet.message_id}>",
                         thread_index=outbound.thread_index(magnet.thread_index))
    return magnet, follow_up


def _time(count: int, build) -> tuple[float, int]:
    """Median µs per message over `count` builds, and the size of the last one."""
    samples, size = [], 0
    for _ in range(count):
        started = time.perf_counter()
        size = len(build())
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        key = _key(Path(folder))
        app = create_app({
            "INSTANCE_PATH": folder, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/bench.db",
            "SECRET_KEY": "bench", "MAIL_FROM": "Ken Thoreson <roadmap@acumen.example>",
            "BASE_URL": "https://desk.acumen.example", "REDIS_URL": "redis://127.0.0.1:1/0",
        })
        with app.app_context():
            upgrade(directory=str(ROOT / "service" / "migrations"))
            assets = ROOT / "service" / "assets"
            [campaign] = campaigns.import_yaml(db.session, (assets / "execution-roadmap.yaml").read_text(), assets)
            db.session.commit()
            contact = Contact(id=1, email="bob@prospect.example", name="Bob Prospect")
            magnet, follow_up = _rows(app.config)
            step = campaign.steps[0]
            print(f"compose + serialise, median of {args.count} (PDF {len(campaign.assets[0].data) // 1024} KB)")
            for label, dkim_key in (("no DKIM", None), ("DKIM rsa-sha256", key)):
                settings = {**app.config, "DKIM_SELECTOR": "bench" if dkim_key else None, "DKIM_PRIVATE_KEY": dkim_key}
                for kind, row, which in (("magnet", magnet, None), ("follow-up", follow_up, step)):
                    us, size = _time(args.count, lambda r=row, s=which, cfg=settings: mailer.to_bytes(
                        mailer.compose(r, contact, campaign, s, cfg), cfg))
                    print(f"  {kind:<10} {label:<16} {us:8.0f} µs per message  ({size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
