"""The long-running commands: `flask --app wsgi poll` and `flask --app wsgi worker`."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("poll")
@click.option("--once", is_flag=True, help="Do one pass over the mailbox and exit.")
@with_appcontext
def poll(once: bool) -> None:
    """Watch the mailbox (IMAP IDLE, or the local Maildir) and store every new message."""
    from .poller import run

    run(current_app._get_current_object(), once=once)


@click.command("worker")
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then exit.")
@with_appcontext
def worker(burst: bool) -> None:
    """Run an RQ worker with the scheduler and the reconciler."""
    from .worker import run

    run(current_app._get_current_object(), burst=burst)


commands = (poll, worker)
