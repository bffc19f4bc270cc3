"""Provider batch APIs: submit many requests at once at a discount, poll, collect by id.

OpenAI Batch, Anthropic Message Batches and Gemini batch mode all take a set of requests,
each tagged with a caller-chosen *custom id*, and finish them within 24 hours at half the
normal price. :class:`BatchProvider` is the one narrow interface over them::

    batch = build_batch_provider("anthropic", endpoint_config)
    batch_id = await batch.submit([("m17", request_17), ("m18", request_18)])
    ...                                   # persist batch_id; a later process may continue
    status = await batch.poll(batch_id)   # BatchStatus(state="in_progress", ...)
    if status.collectable:                # completed, expired or cancelled
        by_id = await batch.results(batch_id, expected=["m17", "m18"])
        # {"m17": Completion(...), "m18": RateLimitError(...)}

Each adapter reuses its online sibling (:mod:`roundtable.providers.openai`, ``anthropic``,
``google``) for the request body (message mapping, structured output) and for parsing each
answer, so a batched call is the same call as an online one. Per-item failures are
classified into the :mod:`roundtable.errors` tree like the online adapters do; items that
were never processed (the batch expired or was cancelled, or the output lacks them) come
back as :class:`BatchItemUnprocessed`, and a result line that cannot be read as
:class:`~roundtable.errors.MalformedResponse` for that item. Failures of the batch calls
themselves (submit, poll, fetching results) raise, like the online adapters.

Like the online adapters, these make one attempt per call: retries, cost and call logging
are the caller's job (cost is the normal price times :attr:`BatchProvider.discount`).

Custom ids must match ``[A-Za-z0-9_-]{1,64}`` (Anthropic's rule, the strictest) and be
unique within a batch; every adapter enforces it, so a mistake shows up in tests.
"""

from __future__ import annotations

import importlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from roundtable import settings
from roundtable.errors import ConfigError, ProviderError
from roundtable.providers.base import Completion, CompletionRequest, Provider
from roundtable.providers.config import EndpointConfig
from roundtable.providers.errors_map import malformed

BatchState = Literal["in_progress", "completed", "failed", "expired", "cancelled"]
#: a batch's outcome per custom id
BatchResults = dict[str, Completion | ProviderError]

CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CUSTOM_ID_IN_LINE = re.compile(r'"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')


@dataclass(frozen=True)
class BatchStatus:
    """Where a batch stands. ``total`` counts its requests (0 while the provider does not
    say), ``succeeded`` and ``errored`` those finished so far (``errored`` includes items
    that expired or were cancelled); ``detail`` is the provider's own word on it."""

    state: BatchState
    total: int
    succeeded: int
    errored: int
    detail: str = ""

    @property
    def finished(self) -> bool:
        """True once the batch will not change any more."""
        return self.state != "in_progress"

    @property
    def collectable(self) -> bool:
        """True when :meth:`BatchProvider.results` can be called (a failed batch has no
        results: its requests were never run)."""
        return self.state in ("completed", "expired", "cancelled")


class BatchNotFinished(ProviderError):
    """:meth:`BatchProvider.results` was asked for a batch still in progress."""

    retryable = True
    kind = "batch_pending"


class BatchItemUnprocessed(ProviderError):
    """A batch item that has no result: the batch expired or was cancelled before it ran,
    or the output simply lacks it. It was not billed; submit it again."""

    retryable = True
    kind = "unprocessed"


@dataclass
class Collected:
    """What an adapter read from a finished batch: results by custom id, and how many
    result lines could not be attributed to any id."""

    items: BatchResults = field(default_factory=dict)
    unreadable: int = 0


class BatchProvider(ABC):
    """A provider's batch API (see the module docstring)."""

    #: endpoint name this batch provider serves
    endpoint: str = "batch"
    #: batch price as a fraction of the normal price
    discount: float = 0.5
    #: most requests one batch may hold; split larger sets over several batches
    max_items: int = 50_000
    #: timeout of each API call made here (uploads can be large)
    call_timeout_s: float = 300.0

    def __init__(self) -> None:
        self._submitted: dict[str, tuple[str, ...]] = {}

    async def submit(self, items: Sequence[tuple[str, CompletionRequest]]) -> str:
        """Submit ``(custom_id, request)`` pairs as one batch; return the provider's batch
        id (persist it: :meth:`poll` and :meth:`results` work from it in a new process)."""
        ids = check_items(items, self.max_items)
        batch_id = await self._submit(items)
        self._submitted[batch_id] = ids
        return batch_id

    @abstractmethod
    async def _submit(self, items: Sequence[tuple[str, CompletionRequest]]) -> str:
        """Send the (already checked) items; return the batch id."""

    @abstractmethod
    async def poll(self, batch_id: str) -> BatchStatus:
        """The batch's current status."""

    async def results(self, batch_id: str,
                      expected: Sequence[str] | None = None) -> BatchResults:
        """Every item's :class:`Completion` or :class:`ProviderError`, by custom id.

        ``expected`` lists the custom ids submitted, in submission order (by default those
        this instance submitted, if it did): each one without a result gets an error
        (:class:`BatchItemUnprocessed`, or :class:`MalformedResponse` when some result
        lines could not be read). Raises :class:`BatchNotFinished` while the batch runs
        and :class:`ProviderError` when it failed as a whole.
        """
        known = tuple(expected) if expected is not None else self._submitted.get(batch_id)
        collected = await self._collect(batch_id, known)
        out = dict(collected.items)
        for custom_id in known or ():
            if custom_id in out:
                continue
            where = f"{self.endpoint} batch {batch_id} item {custom_id}"
            if collected.unreadable:
                out[custom_id] = malformed(
                    where, None, f"no readable result ({collected.unreadable} result "
                    f"line(s) of the batch could not be read)")
            else:
                out[custom_id] = BatchItemUnprocessed(
                    f"{where}: the batch output has no result for this item")
        return out

    @abstractmethod
    async def _collect(self, batch_id: str, expected: tuple[str, ...] | None) -> Collected:
        """Read a finished batch's results (``expected`` in submission order, if known)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections. Default: nothing to release."""

    def item_label(self, batch_id: str, custom_id: str) -> str:
        """How error messages name one item: ``endpoint batch ID item CUSTOM_ID``."""
        return f"{self.endpoint} batch {batch_id} item {custom_id}"


AdapterT = TypeVar("AdapterT", bound=Provider)


class AdapterBatchProvider(BatchProvider, Generic[AdapterT]):
    """A batch API reached through its online adapter: the same SDK client, request
    builder and response parser, so batched and online calls read the same."""

    #: the online adapter class (its constructor takes endpoint, config, api_key)
    adapter_factory: Callable[[str, EndpointConfig, str | None], AdapterT]

    def __init__(self, endpoint: str, config: EndpointConfig, api_key: str | None) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.adapter: AdapterT = type(self).adapter_factory(endpoint, config, api_key)
        self._api_key = api_key

    @property
    def _client(self) -> Any:
        """The adapter's SDK client (every SDK-backed adapter keeps it as ``_client``)."""
        return self.adapter._client  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        await self.adapter.aclose()


def check_items(items: Sequence[tuple[str, CompletionRequest]],
                max_items: int) -> tuple[str, ...]:
    """The custom ids of ``items`` in order; :class:`ValueError` when there are none, too
    many, or an id is invalid or repeated (a caller bug, not a provider failure)."""
    if not items:
        raise ValueError("a batch needs at least one request")
    if len(items) > max_items:
        raise ValueError(f"a batch holds at most {max_items} requests, got {len(items)}; "
                         "split them over several batches")
    seen: set[str] = set()
    for custom_id, _ in items:
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise ValueError(f"batch custom id {custom_id!r} must match "
                             f"[A-Za-z0-9_-]{{1,64}}")
        if custom_id in seen:
            raise ValueError(f"batch custom id {custom_id!r} is used twice")
        seen.add(custom_id)
    return tuple(custom_id for custom_id, _ in items)


def single_model(endpoint: str, items: Sequence[tuple[str, CompletionRequest]]) -> str:
    """The one model all ``items`` use; :class:`ValueError` when they mix models (OpenAI and
    Gemini batches run a single model each)."""
    models = sorted({request.model for _, request in items})
    if len(models) != 1:
        raise ValueError(f"endpoint '{endpoint}': one batch runs one model; got {models}")
    return models[0]


@dataclass(frozen=True)
class ResultLine:
    """One line of a JSONL results file: its custom id (recovered from the raw text when
    the line is not valid JSON), the decoded object or ``None``, and the raw text."""

    custom_id: str | None
    data: dict[str, Any] | None
    raw: str


def read_jsonl(text: str) -> Iterator[ResultLine]:
    """The non-blank lines of a JSONL results file, each decoded when possible."""
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            custom_id = data.get("custom_id")
            yield ResultLine(custom_id if isinstance(custom_id, str) else None, data, raw)
        else:
            match = _CUSTOM_ID_IN_LINE.search(raw)
            yield ResultLine(match.group(1) if match else None, None, raw)


def add_line(collected: Collected, line: ResultLine, label: str,
             outcome: Completion | ProviderError | None) -> None:
    """Record one result line: ``outcome`` for a decoded line, a MalformedResponse for an
    undecodable one; a line with no custom id counts as unreadable. A duplicate id keeps
    the first successful outcome."""
    if line.custom_id is None:
        collected.unreadable += 1
        return
    if line.data is None or outcome is None:
        outcome = malformed(label, None, "the result line is not a JSON object", line.raw)
    previous = collected.items.get(line.custom_id)
    if isinstance(previous, Completion):
        return
    collected.items[line.custom_id] = outcome


# kind -> (module, class) of the batch adapter
_BATCH_ADAPTERS: dict[str, tuple[str, str]] = {
    "openai": ("roundtable.providers.batch_openai", "OpenAIBatchProvider"),
    "anthropic": ("roundtable.providers.batch_anthropic", "AnthropicBatchProvider"),
    "google": ("roundtable.providers.batch_google", "GoogleBatchProvider"),
    "scripted": ("roundtable.providers.batch_scripted", "ScriptedBatchProvider"),
}


def batch_supported(name: str, config: EndpointConfig) -> str | None:
    """``None`` when the endpoint has a batch API, else why not (one line, with the fix).

    ``options.batch`` decides when set; otherwise OpenAI-kind endpoints have one only at
    api.openai.com (most compatible servers do not implement ``/batches``), Anthropic,
    Google and scripted endpoints always, the local model never."""
    opted = config.options.get("batch")
    if opted is not None and not isinstance(opted, bool):
        return f"endpoint '{name}': options.batch must be true or false, got {opted!r}"
    if config.kind not in _BATCH_ADAPTERS:
        return (f"endpoint '{name}' ({config.kind}) has no batch API; "
                "run without --batch")
    if opted is False:
        return (f"endpoint '{name}' has batching turned off (options.batch = false); "
                "run without --batch")
    if config.base_urls:
        return (f"endpoint '{name}' lists replicas (base_urls), and a batch cannot be "
                "spread over them; run without --batch")
    if config.kind == "openai" and opted is None:
        base = config.base_url or "https://api.openai.com/v1"
        if "api.openai.com" not in base:
            return (f"endpoint '{name}' ({base}) is an OpenAI-compatible server that may "
                    "not implement the /batches API; set options.batch = true on the "
                    "endpoint if it does, or run without --batch")
    return None


def build_batch_provider(name: str, config: EndpointConfig,
                         environ: Mapping[str, str] | None = None) -> BatchProvider:
    """The batch adapter for endpoint ``name``; :class:`ConfigError` naming the endpoint
    when it has no batch API (see :func:`batch_supported`). ``options.batch_discount``
    overrides the 0.5 price factor."""
    reason = batch_supported(name, config)
    if reason is not None:
        raise ConfigError(reason)
    discount = config.options.get("batch_discount")
    if discount is not None and (isinstance(discount, bool)
                                 or not isinstance(discount, int | float)
                                 or not 0 <= discount <= 1):
        raise ConfigError(f"endpoint '{name}': options.batch_discount must be a number "
                          f"from 0 to 1, got {discount!r}")
    module_name, class_name = _BATCH_ADAPTERS[config.kind]
    key = settings.api_key(name, config, environ)
    module = importlib.import_module(module_name)
    provider: BatchProvider = getattr(module, class_name)(name, config, key)
    if discount is not None:
        provider.discount = float(discount)
    return provider
