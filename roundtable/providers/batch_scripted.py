"""A deterministic batch provider for tests and benchmarks of batch mode (no network).

Declared on a ``scripted`` endpoint; every :class:`~roundtable.providers.scripted.
ScriptedProvider` option applies to the items (``replies``, ``reasoning``, ``fail`` rules
for per-item errors), plus:

``batch_polls``
    how many polls answer ``in_progress`` before the batch reports its outcome (default 0:
    the first poll reports it). Results are available once that many polls were made.
``batch_outcome``
    ``completed`` (default), ``failed`` (no results: :meth:`results` raises
    :class:`~roundtable.errors.BadRequest`), ``expired`` or ``cancelled`` (every item comes
    back as :class:`~roundtable.providers.batch.BatchItemUnprocessed`).
``batch_drop``
    custom ids left out of the results, to exercise the missing-item path.
``batch_dir``
    a directory where batches live as JSON files, so another process can poll and collect
    them. Default: a store in this process's memory, shared by every instance, so a new
    instance (a "later invocation" in a test) can continue a batch.

Batch ids are ``sbatch-000001``, ``sbatch-000002`` ... Results are computed once, on the
first :meth:`results` call, by running each item through this instance's
:class:`ScriptedProvider` in submission order (no latency), then kept, so collecting twice
gives the same answers.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roundtable import errors
from roundtable.errors import BadRequest, ConfigError, ProviderError
from roundtable.providers.base import ChatMessage, Completion, CompletionRequest, Usage
from roundtable.providers.batch import (
    BatchItemUnprocessed,
    BatchNotFinished,
    BatchProvider,
    BatchResults,
    BatchState,
    BatchStatus,
    Collected,
)
from roundtable.providers.config import EndpointConfig
from roundtable.providers.scripted import ScriptedProvider

_OUTCOMES: tuple[BatchState, ...] = ("completed", "failed", "expired", "cancelled")


@dataclass
class StoredBatch:
    """One scripted batch: its items, the polls made so far and, once collected, results."""

    endpoint: str
    items: list[tuple[str, CompletionRequest]]
    polls: int = 0
    results: BatchResults | None = None


_MEMORY: dict[str, StoredBatch] = {}
_COUNTER = itertools.count(1)
_LOCK = threading.Lock()


class ScriptedBatchProvider(BatchProvider):
    """Deterministic in-memory (or on-disk) batch provider (see the module docstring)."""

    max_items = 1_000_000

    def __init__(self, endpoint: str, config: EndpointConfig, api_key: str | None = None
                 ) -> None:
        super().__init__()
        self.endpoint = endpoint
        opts = config.options
        polls = opts.get("batch_polls", 0)
        if isinstance(polls, bool) or not isinstance(polls, int) or polls < 0:
            raise ConfigError(f"endpoint '{endpoint}': options.batch_polls must be a whole "
                              f"number >= 0, got {polls!r}")
        outcome = opts.get("batch_outcome", "completed")
        if outcome not in _OUTCOMES:
            raise ConfigError(f"endpoint '{endpoint}': options.batch_outcome must be one of "
                              f"{list(_OUTCOMES)}, got {outcome!r}")
        drop = opts.get("batch_drop", [])
        if not isinstance(drop, list) or not all(isinstance(x, str) for x in drop):
            raise ConfigError(f"endpoint '{endpoint}': options.batch_drop must be a list of "
                              f"custom ids, got {drop!r}")
        self.polls_before_done: int = polls
        self.outcome: BatchState = outcome
        self.drop: frozenset[str] = frozenset(drop)
        directory = opts.get("batch_dir")
        self.directory: Path | None = Path(directory) if directory else None
        #: runs the items; its ``requests`` lists every item request, in order
        self.scripted = ScriptedProvider(endpoint, config)
        self.scripted.latency_s = 0.0
        #: how many batches this instance submitted
        self.submit_count = 0

    async def _submit(self, items: Sequence[tuple[str, CompletionRequest]]) -> str:
        self.submit_count += 1
        batch = StoredBatch(self.endpoint, list(items))
        return self._create(batch)

    async def poll(self, batch_id: str) -> BatchStatus:
        """``in_progress`` for the first ``batch_polls`` polls, then the outcome."""
        batch = self._load(batch_id)
        if batch.polls < self.polls_before_done:
            batch.polls += 1
            self._save(batch_id, batch)
            return BatchStatus("in_progress", len(batch.items), 0, 0,
                               f"poll {batch.polls} of {self.polls_before_done}")
        if self.outcome == "failed":
            return BatchStatus("failed", len(batch.items), 0, 0, "scripted failure")
        if self.outcome != "completed":
            return BatchStatus(self.outcome, len(batch.items), 0, len(batch.items),
                               f"scripted {self.outcome}")
        results = await self._results(batch_id, batch)
        ok = sum(1 for v in results.values() if isinstance(v, Completion))
        return BatchStatus("completed", len(batch.items), ok, len(results) - ok, "completed")

    async def _collect(self, batch_id: str, expected: tuple[str, ...] | None) -> Collected:
        batch = self._load(batch_id)
        if batch.polls < self.polls_before_done:
            raise BatchNotFinished(f"{self.endpoint} batch {batch_id} is still in progress; "
                                   "poll until it has finished")
        if self.outcome == "failed":
            raise BadRequest(f"{self.endpoint} batch {batch_id} failed: scripted failure")
        if self.outcome != "completed":
            return Collected({cid: BatchItemUnprocessed(
                f"{self.item_label(batch_id, cid)}: not processed (the batch "
                f"{self.outcome})") for cid, _ in batch.items})
        return Collected(dict(await self._results(batch_id, batch)))

    async def _results(self, batch_id: str, batch: StoredBatch) -> BatchResults:
        if batch.results is None:
            results: BatchResults = {}
            for custom_id, request in batch.items:
                if custom_id in self.drop:
                    continue
                try:
                    results[custom_id] = await self.scripted.complete(request)
                except ProviderError as exc:
                    results[custom_id] = exc
            batch.results = results
            self._save(batch_id, batch)
        return batch.results

    @property
    def requests(self) -> list[CompletionRequest]:
        """Every item request run so far, in order."""
        return self.scripted.requests

    # -- storage ---------------------------------------------------------------------

    def _create(self, batch: StoredBatch) -> str:
        if self.directory is None:
            with _LOCK:
                batch_id = f"sbatch-{next(_COUNTER):06d}"
                _MEMORY[batch_id] = batch
            return batch_id
        self.directory.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(len(list(self.directory.glob("sbatch-*.json"))) + 1):
            batch_id = f"sbatch-{n:06d}"
            try:
                with (self.directory / f"{batch_id}.json").open("x", encoding="utf-8") as fh:
                    fh.write(json.dumps(_dump_batch(batch)))
            except FileExistsError:
                continue
            return batch_id
        raise AssertionError("unreachable")  # pragma: no cover

    def _load(self, batch_id: str) -> StoredBatch:
        if self.directory is None:
            batch = _MEMORY.get(batch_id)
        else:
            path = self.directory / f"{batch_id}.json"
            batch = _load_batch(json.loads(path.read_text("utf-8"))) if path.exists() else None
        if batch is None or batch.endpoint != self.endpoint:
            raise errors.ModelNotFound(f"{self.endpoint}: no batch {batch_id!r}")
        return batch

    def _save(self, batch_id: str, batch: StoredBatch) -> None:
        if self.directory is not None:
            path = self.directory / f"{batch_id}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(_dump_batch(batch)), "utf-8")
            tmp.replace(path)


_ERROR_KINDS: dict[str, type[ProviderError]] = {
    cls.kind: cls for cls in (errors.RateLimitError, errors.ServerError,
                              errors.ProviderTimeout, errors.MalformedResponse,
                              errors.AuthError, errors.ModelNotFound, errors.BadRequest,
                              BatchItemUnprocessed)
}


def _dump_request(request: CompletionRequest) -> dict[str, Any]:
    return {"model": request.model,
            "messages": [[m.role, m.content] for m in request.messages],
            "max_tokens": request.max_tokens, "temperature": request.temperature,
            "timeout_s": request.timeout_s, "seed": request.seed,
            "json_schema": request.json_schema, "metadata": request.metadata}


def _load_request(data: dict[str, Any]) -> CompletionRequest:
    return CompletionRequest(
        model=data["model"],
        messages=tuple(ChatMessage(role, content) for role, content in data["messages"]),
        max_tokens=data["max_tokens"], temperature=data["temperature"],
        timeout_s=data["timeout_s"], seed=data["seed"], json_schema=data["json_schema"],
        metadata=dict(data["metadata"]))


def _dump_outcome(outcome: Completion | ProviderError) -> dict[str, Any]:
    if isinstance(outcome, ProviderError):
        return {"error": outcome.kind, "message": str(outcome),
                "retry_after": outcome.retry_after}
    u = outcome.usage
    return {"text": outcome.text, "reasoning": outcome.reasoning,
            "raw_text": outcome.raw_text, "model": outcome.model,
            "finish_reason": outcome.finish_reason,
            "usage": [u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens]}


def _load_outcome(data: dict[str, Any]) -> Completion | ProviderError:
    if "error" in data:
        cls = _ERROR_KINDS.get(data["error"], ProviderError)
        return cls(data["message"], retry_after=data["retry_after"])
    return Completion(text=data["text"], usage=Usage(*data["usage"]),
                      reasoning=data["reasoning"], raw_text=data["raw_text"],
                      model=data["model"], finish_reason=data["finish_reason"])


def _dump_batch(batch: StoredBatch) -> dict[str, Any]:
    return {"endpoint": batch.endpoint, "polls": batch.polls,
            "items": [[cid, _dump_request(req)] for cid, req in batch.items],
            "results": None if batch.results is None else
            {cid: _dump_outcome(out) for cid, out in batch.results.items()}}


def _load_batch(data: dict[str, Any]) -> StoredBatch:
    results = data.get("results")
    return StoredBatch(
        endpoint=data["endpoint"], polls=data["polls"],
        items=[(cid, _load_request(req)) for cid, req in data["items"]],
        results=None if results is None else
        {cid: _load_outcome(out) for cid, out in results.items()})
