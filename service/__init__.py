"""Follow-Through: the Flask app factory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

import config

from . import mailcheck

ROOT = Path(__file__).resolve().parent.parent


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
    if app.config["TRUSTED_PROXIES"]:
        # Behind a reverse proxy: take the client's address and scheme from its X-Forwarded-* headers,
        # or the login limit would count every user as the proxy.
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    _init_extensions(app)
    _register(app)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    mailcheck.log_warnings(app.config)
    return app


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
