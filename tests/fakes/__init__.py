"""Reusable fakes for tests and benchmarks: a scriptable HTTP server on 127.0.0.1 and
realistic provider response bodies. See :mod:`tests.fakes.server`."""

from tests.fakes.responses import (
    anthropic_error,
    anthropic_message,
    gemini_error,
    gemini_response,
    openai_chat,
    openai_error,
)
from tests.fakes.server import FakeResponse, FakeServer, RecordedRequest, refused_url

__all__ = [
    "FakeResponse",
    "FakeServer",
    "RecordedRequest",
    "anthropic_error",
    "anthropic_message",
    "gemini_error",
    "gemini_response",
    "openai_chat",
    "openai_error",
    "refused_url",
]
