"""The app's pages, one module per page family; each exposes ``routes()``.

A new page family (for example the human seat) is a new module here listed in
:data:`roundtable.web.app.PAGES`.
"""
