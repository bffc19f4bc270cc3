"""Render a report (header, sections, figures) as one self-contained HTML page.

Figures are embedded as ``data:`` URIs, so ``index.html`` alone shows everything -- it can be
mailed or attached on its own. The same PNGs and their CSV files sit next to it and are
linked from each caption, for reuse in a paper or a spreadsheet. No scripts, no external
style sheets or fonts: the page renders offline in any browser.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from roundtable.reporting.model import FigureEntry, ReportHeader, Section

__all__ = ["GENERATOR", "render_html", "render_unfinished"]

GENERATOR = "roundtable report"
"""Value of the page's ``<meta name="generator">``: marks a folder as holding a report."""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 1.5rem 2rem 4rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.3rem; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2.5rem; }
h3 { margin-bottom: 0.4rem; }
table.facts { border-collapse: collapse; margin: 0.8rem 0; }
table.facts th { text-align: left; padding: 0.15rem 1.2rem 0.15rem 0; font-weight: 600; }
table.facts td { padding: 0.15rem 0; }
nav ol { columns: 2; }
figure { margin: 1.2rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.95rem; color: #444; margin-top: 0.3rem; }
p.note { background: #fff7e0; border-left: 4px solid #e0b000; padding: 0.5rem 0.8rem; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def _e(text: str) -> str:
    return escape(text, quote=True)


def _facts(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def _figure(fig: FigureEntry, folder: Path) -> str:
    data = base64.b64encode((folder / fig.png).read_bytes()).decode("ascii")
    return (
        f'<figure id="{_e(fig.slug)}">\n<h3>{_e(fig.title)}</h3>\n'
        f'<img src="data:image/png;base64,{data}" alt="{_e(fig.title)}">\n'
        f"<figcaption>{_e(fig.caption)} "
        f'<a href="{_e(fig.csv)}">Data (CSV)</a> · <a href="{_e(fig.png)}">PNG</a>'
        f"</figcaption>\n</figure>")


def _section(section: Section, folder: Path) -> str:
    parts = [f'<section id="{_e(section.anchor)}">', f"<h2>{_e(section.title)}</h2>"]
    if section.intro:
        parts.append(f"<p>{_e(section.intro)}</p>")
    parts.extend(f'<p class="note">{_e(n)}</p>' for n in section.notes)
    parts.extend(_figure(f, folder) for f in section.figures)
    parts.append("</section>")
    return "\n".join(parts)


def _toc(sections: Sequence[Section]) -> str:
    items = []
    for s in sections:
        sub = "".join(f'<li><a href="#{_e(f.slug)}">{_e(f.title)}</a></li>'
                      for f in s.figures)
        inner = f"<ul>{sub}</ul>" if sub and len(s.figures) > 1 else ""
        missing = "" if s.figures else " <em>(not available)</em>"
        items.append(f'<li><a href="#{_e(s.anchor)}">{_e(s.title)}</a>{missing}{inner}</li>')
    return f"<nav><h2>Contents</h2><ol>{''.join(items)}</ol></nav>"


def render_html(header: ReportHeader, sections: Sequence[Section], folder: Path) -> str:
    """The complete page; reads each figure's PNG from ``folder`` to embed it."""
    facts = [("Database", header.database), ("Codes", header.source),
             ("Generated", header.generated), *header.counts, *header.options]
    body = "\n".join(_section(s, folder) for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta name="generator" content="{GENERATOR}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(header.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{_e(header.title)}</h1>\n{_facts(facts)}</header>\n"
        f"{_toc(sections)}\n{body}\n</body>\n</html>\n")


def render_unfinished() -> str:
    """The page a report folder holds while its report is being written (and keeps if
    writing fails): it says so, and marks the folder as a report's for the next run."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta name="generator" content="{GENERATOR}">\n<title>report not finished</title>'
        "\n</head>\n<body>\n<p>This report was not finished: run <code>roundtable report"
        "</code> again.</p>\n</body>\n</html>\n")
