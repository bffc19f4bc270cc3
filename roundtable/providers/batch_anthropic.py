"""Anthropic Message Batches through the official ``anthropic`` SDK.

``messages.batches.create`` gets ``[{custom_id, params}]``, each ``params`` built by
:meth:`AnthropicProvider.build_params` (system split, turn merging, prompt caching,
structured output), so a batched call is the online call. A batch may mix models.
``retrieve`` gives the status; an ended batch's results are streamed line by line from its
``results_url`` (``messages.batches.results``) and matched by ``custom_id`` (the API does
not keep request order). Result types: ``succeeded`` (parsed by
:meth:`AnthropicProvider.parse`), ``errored`` (classified by the error type's HTTP status),
``canceled`` and ``expired`` (:class:`~roundtable.providers.batch.BatchItemUnprocessed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roundtable.errors import ProviderError
from roundtable.providers.anthropic import AnthropicProvider
from roundtable.providers.base import Completion, CompletionRequest
from roundtable.providers.batch import (
    AdapterBatchProvider,
    BatchItemUnprocessed,
    BatchNotFinished,
    BatchState,
    BatchStatus,
    Collected,
    add_line,
    read_jsonl,
)
from roundtable.providers.errors_map import (
    classify_status,
    error_text,
    malformed,
    sdk_errors,
)

#: HTTP status of each API error type, as the online API would have answered
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "gateway_timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicBatchProvider(AdapterBatchProvider[AnthropicProvider]):
    """Message Batches over an :class:`AnthropicProvider`'s client, params and parser."""

    max_items = 100_000

    adapter_factory = AnthropicProvider

    def request(self, custom_id: str, request: CompletionRequest) -> dict[str, Any]:
        """One batch request: the same params an online call would send."""
        return {"custom_id": custom_id, "params": self.adapter.build_params(request)}

    async def _submit(self, items: Sequence[tuple[str, CompletionRequest]]) -> str:
        import anthropic

        requests = [self.request(cid, req) for cid, req in items]
        models = sorted({req.model for _, req in items})
        with sdk_errors(anthropic, endpoint=self.endpoint, model=", ".join(models),
                        timeout_s=self.call_timeout_s, api_key=self._api_key):
            batch = await self._client.messages.batches.create(
                requests=requests,
                timeout=self.call_timeout_s)
        return str(batch.id)

    async def _retrieve(self, batch_id: str) -> Any:
        import anthropic

        with sdk_errors(anthropic, endpoint=f"{self.endpoint} batch {batch_id}", model="",
                        timeout_s=self.call_timeout_s, api_key=self._api_key):
            return await self._client.messages.batches.retrieve(
                batch_id, timeout=self.call_timeout_s)

    async def poll(self, batch_id: str) -> BatchStatus:
        """``in_progress`` and ``canceling`` are in progress; an ended batch is completed,
        or expired / cancelled when no request ran and some expired / none expired but
        some were cancelled."""
        return _status(await self._retrieve(batch_id))

    async def _collect(self, batch_id: str, expected: tuple[str, ...] | None) -> Collected:
        import anthropic

        status = _status(await self._retrieve(batch_id))
        if not status.finished:
            raise BatchNotFinished(f"{self.endpoint} batch {batch_id} is still in progress "
                                   f"({status.detail}); poll until it has finished")
        collected = Collected()
        with sdk_errors(anthropic, endpoint=f"{self.endpoint} batch {batch_id}", model="",
                        timeout_s=self.call_timeout_s, api_key=self._api_key):
            async with self._client.messages.batches.with_streaming_response.results(
                    batch_id, timeout=self.call_timeout_s) as response:
                async for text in response.iter_lines():
                    for line in read_jsonl(text):
                        label = self.item_label(batch_id, line.custom_id or "?")
                        outcome = (self._outcome(line.data, label)
                                   if line.data is not None else None)
                        add_line(collected, line, label, outcome)
        return collected

    def _outcome(self, data: dict[str, Any], label: str) -> Completion | ProviderError:
        """One result line as a completion or a classified error."""
        from anthropic.types import Message

        result = data.get("result")
        kind = result.get("type") if isinstance(result, dict) else None
        if not isinstance(result, dict) or not isinstance(kind, str):
            return malformed(label, None, "the result line has no result type", data,
                             self._api_key)
        if kind == "succeeded":
            message = result.get("message")
            if not isinstance(message, dict):
                return malformed(label, None, "a succeeded result without a message", data,
                                 self._api_key)
            try:
                return self.adapter.parse(Message.construct(**message),
                                          str(message.get("model") or ""))
            except ProviderError as exc:
                return exc
        if kind == "errored":
            body = result.get("error")
            inner = body.get("error", body) if isinstance(body, dict) else None
            error_type = inner.get("type") if isinstance(inner, dict) else None
            status = ERROR_STATUS.get(error_type, 500) if isinstance(error_type, str) else 500
            return classify_status(status, error_text(body, str(error_type or "errored")),
                                   endpoint=label, body=body, api_key=self._api_key)
        if kind in ("canceled", "expired"):
            return BatchItemUnprocessed(f"{label}: not processed (the batch {kind} it)")
        return malformed(label, None, f"unknown result type {kind!r}", data, self._api_key)



def _status(batch: Any) -> BatchStatus:
    raw = str(getattr(batch, "processing_status", "") or "")
    counts = getattr(batch, "request_counts", None)
    succeeded, errored, canceled, expired, processing = (
        _int(getattr(counts, name, 0))
        for name in ("succeeded", "errored", "canceled", "expired", "processing"))
    total = succeeded + errored + canceled + expired + processing
    state: BatchState = "in_progress"
    if raw == "ended":
        state = "completed"
        if succeeded + errored == 0 and expired:
            state = "expired"
        elif succeeded + errored == 0 and canceled:
            state = "cancelled"
    detail = (f"{raw}: {succeeded} succeeded, {errored} errored, {canceled} canceled, "
              f"{expired} expired, {processing} processing")
    return BatchStatus(state=state, total=total, succeeded=succeeded,
                       errored=errored + canceled + expired, detail=detail)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
