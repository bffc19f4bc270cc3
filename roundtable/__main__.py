"""``python -m roundtable`` runs the CLI."""

from roundtable.cli.main import app

app(prog_name="roundtable")
