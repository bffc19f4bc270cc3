"""``roundtable view``: serve the web app (runs, transcripts with codes, live runs, review)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from roundtable import ui
from roundtable.cli.common import DbOption, db_url, display_url, handles_errors, open_db
from roundtable.errors import ConfigError

TOKEN_ENV = "ROUNDTABLE_VIEW_TOKEN"


def register(app: typer.Typer) -> None:
    """Add ``roundtable view`` to the CLI."""
    app.command("view")(view)


def check_bind(host: str, token: str | None) -> None:
    """A bind beyond loopback needs a token (raises :class:`ConfigError` otherwise)."""
    from roundtable.web.auth import is_loopback

    if not is_loopback(host) and not token:
        raise ConfigError(
            f"--host {host}: serving beyond this machine needs a token; pass --token T or set "
            f"{TOKEN_ENV} (for example --token $(python -c 'import secrets; "
            f"print(secrets.token_urlsafe(16))'))")


@handles_errors
def view(
    db: DbOption = None,
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(
        "--host", help="Address to bind. Anything but loopback requires a token.")]
    = "127.0.0.1",
    token: Annotated[str | None, typer.Option(
        "--token", help=f"Require this token on every request (default: ${TOKEN_ENV}).",
        show_default=False)] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="A folder written by `roundtable report`: served at /report/ and "
        "linked from each run's page.", show_default=False)] = None,
    codebook: Annotated[Path | None, typer.Option(
        "--codebook", help="Codebook for the review pages (default: the sample's judges').",
        show_default=False)] = None,
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the app in the default browser.")] = False,
) -> None:
    """Serve a web app over the database: runs, transcripts with codes beside each message,
    live runs, and blind coding of review samples (/review/SAMPLE/CODER).

    Needs no network: every asset ships with roundtable. Stop with Ctrl-C.

    On 127.0.0.1 there is no login; any other --host needs --token ($ROUNDTABLE_VIEW_TOKEN).
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    if report is not None and not (report / "index.html").is_file():
        raise ConfigError(f"--report {report}: no index.html there; give the folder "
                          f"`roundtable report` wrote")
    if codebook is not None and not codebook.is_file():
        raise ConfigError(f"--codebook {codebook}: no such file")
    from roundtable.web.server import serve_in_background

    url = db_url(db)
    with open_db(db, create=False):
        pass  # a mistyped --db is an error here, never a new empty database
    handle = serve_in_background(url, port, host=host, token=token, report_dir=report,
                                 codebook=codebook)
    address = handle.url + (f"/?token={token}" if token else "/")
    where = " (listening on all interfaces: use this machine's name from elsewhere)" \
        if host in ("0.0.0.0", "::") else ""
    # typer.echo, not rich: a wrapped URL cannot be clicked or copied whole
    typer.echo(f"roundtable view: {display_url(url)}\nOpen {address}{where}\nCtrl-C to stop.")
    if open_browser:
        import webbrowser

        webbrowser.open(address)
    try:
        while handle.thread.is_alive():
            handle.thread.join(0.5)
    except KeyboardInterrupt:
        ui.plain("Stopping the viewer.")
    finally:
        handle.stop()
