"""Follow-Through: the Flask app factory, and the logging every process of it shares."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from flask import Flask
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

import config

from . import mailcheck

ROOT = Path(__file__).resolve().parent.parent
LOG_HANDLER = "follow-through"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(tag)s%(message)s"
_journey: ContextVar[str] = ContextVar("journey", default="")


def create_app(overrides: dict | None = None) -> Flask:
    """Build the app; `overrides` replace settings read from the environment (tests)."""
    overrides = overrides or {}
    instance = overrides.get("INSTANCE_PATH") or os.environ.get("FT_INSTANCE")
    app = Flask(
        __name__,
        instance_path=str(Path(instance or ROOT / "instance").resolve()),
        template_folder=str(ROOT / "templates"),
    )
    app.config.update(config.load(app.instance_path))
    app.config.update(overrides)
    config.finish(app.config)
    configure_logging(app.config["LOG_FORMAT"])
    if app.config["TRUSTED_PROXIES"]:
        # Behind a reverse proxy: take the client's address and scheme from its X-Forwarded-* headers,
        # or the login limit would count every user as the proxy.
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    _init_extensions(app)
    _register(app)
    mailcheck.log_warnings(app.config)
    return app


@contextmanager
def journey(tag: str) -> Iterator[None]:
    """Name the message every log line inside is about: `in#12` (an inbound message), `out#34` (a ledger row)."""
    token = _journey.set(tag)
    try:
        yield
    finally:
        _journey.reset(token)


class JourneyFilter(logging.Filter):
    """Puts the current journey on each record, so a search for `in#12` finds that message's whole story."""

    def filter(self, record: logging.LogRecord) -> bool:
        journey = _journey.get()
        if journey:  # JSON lines then carry the field only when there is one
            record.journey = journey
        return True


class TextFormatter(logging.Formatter):
    """The plain format, with `[in#12] ` before the message of a line that belongs to a journey."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        journey = getattr(record, "journey", "")
        record.tag = f"[{journey}] " if journey else ""
        return super().formatMessage(record)


def configure_logging(log_format: str) -> None:
    """Log to stderr as text or as one JSON object per line, installed once per process (a later app only
    changes the format). When something else already owns the root logger (a test runner, a logging config
    of the operator's), it is left alone, as `logging.basicConfig` would."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == LOG_HANDLER), None)
    if handler is None:
        if root.handlers:
            return
        handler = logging.StreamHandler()
        handler.set_name(LOG_HANDLER)
        handler.addFilter(JourneyFilter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    if log_format == "json":
        names = {"levelname": "level", "name": "logger"}
        handler.setFormatter(JsonFormatter(["levelname", "name", "message"], rename_fields=names, timestamp="time"))
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))


def _init_extensions(app: Flask) -> None:
    from . import models  # noqa: F401  (tables must be known to Alembic)
    from .extensions import csrf, db, login, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "service" / "migrations"), render_as_batch=True)
    login.init_app(app)
    csrf.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            _sqlite_transactions(db.engine)


def _sqlite_transactions(engine) -> None:
    """Make pysqlite honour real transactions and savepoints, and wait for other processes' locks.

    Without this, pysqlite emits no BEGIN, so releasing a SAVEPOINT commits (SQLAlchemy's
    documented pysqlite recipe).
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout = 30000")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _register(app: Flask) -> None:
    from . import admin, cli, web

    app.register_blueprint(web.bp)
    app.register_blueprint(admin.bp)
    cli.register(app)
