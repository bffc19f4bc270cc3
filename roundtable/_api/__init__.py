"""The library calls every CLI command is a shell over (private; import from ``roundtable``).

Each public function (``roundtable.run``, ``roundtable.judge``, ...) parses nothing and
prints nothing: it takes typed arguments, does one job and returns a typed result with
``.to_json()`` (what the CLI's ``--json`` prints) and, for tables, ``.to_pandas()``.
Every function has an ``async`` twin (``run_async``, ...) for notebooks that already run
an event loop.
"""
