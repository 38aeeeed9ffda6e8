"""The composition root: the app, plus the worker and poller commands from workers/."""

from service import create_app
from workers.cli import commands

app = create_app()
for command in commands:
    app.cli.add_command(command)
