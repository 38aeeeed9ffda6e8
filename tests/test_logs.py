"""Logs: each line of one message's journey names it (`[in#12]`, then `[out#34]`); LOG_FORMAT=json is JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from service import ROOT
from tests.conftest import DEFAULT_YAML, _load
from tests.test_fault_drills import env_for
from tests.world import mail, run_poller, scalar


def flask(args: list[str], env: dict) -> str:
    """Run a real `flask --app wsgi` process; returns what it logged (stderr)."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def _requested(app) -> None:
    """bob's request waits in the local Maildir, as the embedded default reads mail."""
    _load(app, DEFAULT_YAML.read_text())
    new = Path(app.config["MAILDIR"]) / "new"
    new.mkdir(parents=True, exist_ok=True)
    (new / "request.eml").write_bytes(mail())


def _ids(app) -> tuple[int, int]:
    return scalar(app, "SELECT id FROM inbound_message"), scalar(app, "SELECT id FROM outbound WHERE kind = 'magnet'")


def test_every_line_of_a_requests_journey_carries_its_inbound_then_its_ledger_id(app, settings, sink):
    _requested(app)
    env = env_for(settings, LOG_FORMAT="text")
    polled = flask(["poll", "--once"], env).splitlines()
    worked = flask(["worker", "--burst"], env).splitlines()
    sink.wait_for(1)
    inbound, row = _ids(app)
    assert [line for line in polled if f"[in#{inbound}]" in line] == [
        next(line for line in polled if "stored from default (inbox), queued" in line)
    ]
    mine = [line for line in worked if f"[in#{inbound}]" in line]
    theirs = [line for line in worked if f"[out#{row}]" in line]
    assert any("inbound: request: 1 to send" in line for line in mine)
    assert any(f"Job OK (in-{inbound})" in line for line in mine)  # RQ's own line about the job
    assert any("send: sent: 250" in line for line in theirs)
    assert worked.index(mine[-1]) < worked.index(theirs[0])
    # The worker's lines about no message in particular carry no tag.
    assert not [line for line in worked if "Listening on" in line and "#" in line]


def test_json_logs_are_one_object_per_line_with_the_journey_as_a_field(app, settings, sink):
    _requested(app)
    run_poller(app)
    lines = flask(["worker", "--burst"], env_for(settings, LOG_FORMAT="json")).splitlines()
    sink.wait_for(1)
    inbound, row = _ids(app)
    records = [json.loads(line) for line in lines]
    assert records and all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    journeys = {record["message"]: record.get("journey") for record in records}
    assert journeys["inbound: request: 1 to send"] == f"in#{inbound}"
    assert next(j for m, j in journeys.items() if m.startswith("send: sent: 250")) == f"out#{row}"
    assert journeys["*** Listening on test..."] is None
