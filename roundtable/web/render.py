"""Message text to HTML: CommonMark with raw HTML disabled (message text is untrusted)."""

from __future__ import annotations

import functools

from markdown_it import MarkdownIt
from markupsafe import Markup

__all__ = ["markdown"]


@functools.lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # "html": False escapes any tag in the text; markdown-it also refuses javascript: links
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


@functools.lru_cache(maxsize=4096)
def markdown(text: str) -> Markup:
    """``text`` rendered as safe HTML."""
    return Markup(_parser().render(text or ""))
