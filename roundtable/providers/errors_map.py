"""Shared failure classification for the HTTP provider adapters.

Each adapter catches its SDK's exceptions and hands the pieces (HTTP status, message,
headers, body) to :func:`classify_status`, or a transport exception to
:func:`classify_transport`; both return a :class:`roundtable.errors.ProviderError` subclass
instance for the adapter to raise. Messages are short, name the endpoint and status, and
never contain the API key.

Mapping: 429 → RateLimitError (with retry-after); 5xx, 529 and "overloaded" → ServerError;
408 and client-side timeouts → ProviderTimeout; connection failures → ServerError (a server
that is restarting is worth another try); 401/403 and invalid-key 400s → AuthError; 404 and
"model decommissioned / not found" → ModelNotFound; other 4xx → BadRequest.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from roundtable.errors import (
    AuthError,
    BadRequest,
    MalformedResponse,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)

MAX_MESSAGE = 300

_MODEL_GONE = re.compile(
    r"decommissioned|model_not_found|model not found|no such model|unknown model"
    r"|model\W.{0,80}(does not exist|not found|retired)",
    re.IGNORECASE | re.DOTALL,
)
_BAD_KEY = re.compile(r"api[_ ]?key[_ ](not[_ ]valid|invalid)|invalid[_ ]api[_ ]key",
                      re.IGNORECASE)
_OVERLOADED = re.compile(r"overloaded", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced (keys never reach messages)."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    return text


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """One line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def parse_retry_after(headers: Mapping[str, str] | None, *,
                      now: float | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``retry-after`` (delta seconds or
    an HTTP-date). ``None`` when absent or unparseable; never negative."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def retry_delay_from_body(body: Any) -> float | None:
    """Google's ``google.rpc.RetryInfo`` hint (``"retryDelay": "37s"``) in an error body."""
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    for item in details:
        if isinstance(item, dict) and isinstance(item.get("retryDelay"), str):
            match = _DURATION.match(item["retryDelay"])
            if match:
                return float(match.group(1))
    return None


def error_text(body: Any, fallback: str = "") -> str:
    """The human part of an error body: ``error.message`` / ``message`` / the text."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            msg = str(error.get("message") or error.get("type") or "")
            code = error.get("code")
            if isinstance(code, str) and code not in msg:
                msg = f"{msg} ({code})" if msg else code
            if msg:
                return msg
        if isinstance(error, str):
            return error
        if body.get("message"):
            return str(body["message"])
        return json.dumps(body)[:MAX_MESSAGE]
    if isinstance(body, str | bytes):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return text or fallback
    return fallback


def classify_status(
    status: int,
    message: str,
    *,
    endpoint: str,
    model: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    api_key: str | None = None,
) -> ProviderError:
    """The :class:`ProviderError` for an HTTP error answer."""
    detail = shorten(redact(message, api_key)) or "no message"
    where = f"{endpoint}" + (f" model '{model}'" if model else "")
    text = f"{where}: HTTP {status}: {detail}"
    raw = shorten(redact(_raw_of(body), api_key), 2000) if body is not None else None
    if status == 429:
        retry_after = parse_retry_after(headers)
        if retry_after is None:
            retry_after = retry_delay_from_body(body)
        return RateLimitError(text, status=status, retry_after=retry_after, raw=raw)
    if status >= 500 or _OVERLOADED.search(message):
        return ServerError(text, status=status, retry_after=parse_retry_after(headers), raw=raw)
    if status == 408:
        return ProviderTimeout(text, status=status, raw=raw)
    if status == 409:
        # A conflict on a stateless completion is a transient server-side race.
        return ServerError(text, status=status, raw=raw)
    if status in (401, 403) or (status == 400 and _BAD_KEY.search(message)):
        return AuthError(
            f"{text} (check the endpoint's API key variable and its permissions)",
            status=status, raw=raw)
    if status == 404 or _MODEL_GONE.search(message):
        return ModelNotFound(
            f"{text} (check the model id and the endpoint's base_url)",
            status=status, raw=raw)
    return BadRequest(text, status=status, raw=raw)


def timeout_error(endpoint: str, model: str | None, timeout_s: float | None,
                  detail: str = "") -> ProviderTimeout:
    """A :class:`ProviderTimeout` for a call that outlived its timeout."""
    where = f"{endpoint}" + (f" model '{model}'" if model else "")
    limit = f" within {timeout_s:g}s" if timeout_s is not None else ""
    return ProviderTimeout(f"{where}: no answer{limit}" + (f" ({detail})" if detail else ""))


def connection_error(endpoint: str, model: str | None, detail: str,
                     api_key: str | None = None) -> ServerError:
    """A :class:`ServerError` for a refused or dropped connection (retryable)."""
    where = f"{endpoint}" + (f" model '{model}'" if model else "")
    return ServerError(f"{where}: connection failed: {shorten(redact(detail, api_key))}")


def classify_transport(exc: BaseException, *, endpoint: str, model: str | None = None,
                       timeout_s: float | None = None,
                       api_key: str | None = None) -> ProviderError | None:
    """The :class:`ProviderError` for a transport failure (timeouts, refused or dropped
    connections) raised by httpx2/httpx or asyncio; ``None`` when ``exc`` is not one."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    from_httpx = type(exc).__module__.split(".")[0] in ("httpx2", "httpx")
    detail = shorten(redact(str(exc), api_key)) or type(exc).__name__
    if isinstance(exc, TimeoutError) or (from_httpx and "TimeoutException" in names):
        return timeout_error(endpoint, model, timeout_s, detail)
    if isinstance(exc, ConnectionError) or (
            from_httpx and names & {"TransportError", "NetworkError", "RemoteProtocolError"}):
        return connection_error(endpoint, model, detail)
    return None


def malformed(endpoint: str, model: str | None, reason: str, raw: Any = None,
              api_key: str | None = None) -> MalformedResponse:
    """A :class:`MalformedResponse` naming what was wrong with the body."""
    where = f"{endpoint}" + (f" model '{model}'" if model else "")
    raw_text = shorten(redact(_raw_of(raw), api_key), 2000) if raw is not None else None
    return MalformedResponse(f"{where}: malformed response: {shorten(reason)}", raw=raw_text)


def _raw_of(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    if isinstance(body, str):
        return body
    try:
        return json.dumps(body, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(body)


@contextmanager
def sdk_errors(sdk: ModuleType, *, endpoint: str, model: str, timeout_s: float,
               api_key: str | None) -> Iterator[None]:
    """Translate the exceptions of a Stainless-generated SDK (``openai``, ``anthropic``:
    the same class names in each) raised inside the block into :mod:`roundtable.errors`."""
    try:
        yield
    except sdk.APIStatusError as exc:
        raise classify_status(
            exc.status_code, error_text(exc.body, exc.message), endpoint=endpoint,
            model=model, headers=exc.response.headers, body=exc.body,
            api_key=api_key) from None
    except sdk.APIResponseValidationError as exc:
        raise malformed(endpoint, model, exc.message, exc.body, api_key) from None
    except (sdk.APITimeoutError, TimeoutError):
        raise timeout_error(endpoint, model, timeout_s) from None
    except sdk.APIConnectionError as exc:
        raise connection_error(endpoint, model, str(exc.__cause__ or exc), api_key) from None
    except json.JSONDecodeError as exc:  # the body claimed to be JSON but was not
        raise malformed(endpoint, model, f"invalid JSON: {exc}", api_key=api_key) from None
