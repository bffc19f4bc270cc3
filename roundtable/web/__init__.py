"""``roundtable view``: a web app to look at runs, transcripts with codes, live runs, and to
code samples in the browser.

* :func:`create_app` -- the ASGI app over a database (Starlette);
* :func:`serve_in_background` -- the same app on a thread, returning a handle to stop it.
"""

from __future__ import annotations

from roundtable.web.app import create_app
from roundtable.web.server import ServerHandle, serve_in_background

__all__ = ["ServerHandle", "create_app", "serve_in_background"]
