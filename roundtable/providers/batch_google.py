"""Gemini batch mode through the official ``google-genai`` SDK (Gemini API).

``client.aio.batches.create(model=..., src=[InlinedRequest, ...])`` submits inlined
requests, each built by :meth:`GoogleProvider.build_request` (system instruction, turn
merging, JSON-schema output) and tagged with ``metadata = {"key": custom_id}``; one batch
runs one model. ``batches.get`` gives the job state; a finished job carries its
``inlined_responses`` in request order, each with its metadata, a
``GenerateContentResponse`` (parsed by :meth:`GoogleProvider.parse`) or an error (a
``google.rpc`` status, classified by its HTTP equivalent). A response without a key is
matched by position when the submitted ids are known.

The Gemini API reports no per-request counts through the SDK: while a job runs,
:meth:`GoogleBatchProvider.poll` gives the number of requests submitted by this instance
(0 in a new process) as ``total``; a finished job's counts come from its responses.
The SDK validates the whole job body, so a response of the wrong JSON shape fails the
collection (``MalformedResponse``) rather than one item; a well-formed but unusable one
(no candidates, neither response nor error) fails its item only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roundtable.errors import BadRequest, ProviderError
from roundtable.providers.base import Completion, CompletionRequest
from roundtable.providers.batch import (
    AdapterBatchProvider,
    BatchNotFinished,
    BatchState,
    BatchStatus,
    Collected,
    single_model,
)
from roundtable.providers.errors_map import classify_status, malformed, shorten
from roundtable.providers.google import GoogleProvider, genai_errors

#: metadata field carrying the custom id
KEY = "key"
_STATES: dict[str, BatchState] = {
    "JOB_STATE_SUCCEEDED": "completed",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_EXPIRED": "expired",
}
#: HTTP status of each google.rpc.Code (https://google.aip.dev/193)
RPC_STATUS: dict[int, int] = {
    1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409,
    11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}


class GoogleBatchProvider(AdapterBatchProvider[GoogleProvider]):
    """Gemini batch mode over a :class:`GoogleProvider`'s client, builder and parser."""

    max_items = 5_000
    #: the API refuses inlined batches over 20 MB; keep a margin for the JSON around texts
    max_text_bytes = 18_000_000

    adapter_factory = GoogleProvider

    def inlined(self, custom_id: str, request: CompletionRequest) -> Any:
        """One ``InlinedRequest``: the online call's contents and config, keyed by id."""
        from google.genai import types

        contents, config = self.adapter.build_request(request)
        # the per-call timeout means nothing inside a batch
        config = config.model_copy(update={"http_options": None})
        return types.InlinedRequest(contents=contents, config=config,
                                    metadata={KEY: custom_id})

    async def _submit(self, items: Sequence[tuple[str, CompletionRequest]]) -> str:
        model = single_model(self.endpoint, items)
        size = sum(len(m.content.encode()) for _, req in items for m in req.messages)
        if size > self.max_text_bytes:
            raise ValueError(f"endpoint '{self.endpoint}': {size} bytes of prompt text is "
                             f"more than one inlined Gemini batch takes "
                             f"({self.max_text_bytes}); split the requests over several "
                             "batches")
        src = [self.inlined(cid, req) for cid, req in items]
        with genai_errors(self.endpoint, model, self.call_timeout_s, self._api_key):
            job = await self._client.aio.batches.create(
                model=model, src=src,
                config={"display_name": f"roundtable-{items[0][0]}-{len(items)}",
                        "http_options": self._http_options()})
        if not job.name:
            raise malformed(self.endpoint, model, "the created batch job has no name",
                            api_key=self._api_key)
        return str(job.name)

    def _http_options(self) -> Any:
        from google.genai import types

        # the SDK's timeout is in whole milliseconds
        return types.HttpOptions(timeout=int(self.call_timeout_s * 1000))

    async def _get(self, batch_id: str) -> Any:
        with genai_errors(f"{self.endpoint} batch {batch_id}", "", self.call_timeout_s,
                          self._api_key):
            return await self._client.aio.batches.get(
                name=batch_id, config={"http_options": self._http_options()})

    async def poll(self, batch_id: str) -> BatchStatus:
        """Succeeded and partially succeeded jobs are completed; failed, cancelled and
        expired map one to one; every other state is in progress."""
        return self._status(batch_id, await self._get(batch_id))

    def _status(self, batch_id: str, job: Any) -> BatchStatus:
        state_name = _enum_name(getattr(job, "state", None))
        state = _STATES.get(state_name, "in_progress")
        responses = _responses(job)
        error = getattr(job, "error", None)
        detail = state_name
        if error is not None and getattr(error, "message", None):
            detail = f"{state_name}: {error.message}"
        if state == "in_progress" or not responses:
            total = len(self._submitted.get(batch_id, ()))
            return BatchStatus(state, total, 0, 0, shorten(detail))
        failed = sum(1 for r in responses if getattr(r, "error", None) is not None)
        return BatchStatus(state, len(responses), len(responses) - failed, failed,
                           shorten(detail))

    async def _collect(self, batch_id: str, expected: tuple[str, ...] | None) -> Collected:
        job = await self._get(batch_id)
        status = self._status(batch_id, job)
        if not status.finished:
            raise BatchNotFinished(f"{self.endpoint} batch {batch_id} is still in progress "
                                   f"({status.detail}); poll until it has finished")
        if status.state == "failed":
            raise BadRequest(f"{self.endpoint} batch {batch_id} failed: {status.detail}")
        model = str(getattr(job, "model", None) or "").removeprefix("models/")
        collected = Collected()
        for index, item in enumerate(_responses(job)):
            metadata = getattr(item, "metadata", None) or {}
            custom_id = metadata.get(KEY)
            if custom_id is None and expected is not None and index < len(expected):
                custom_id = expected[index]
            if custom_id is None:
                collected.unreadable += 1
                continue
            outcome = self._outcome(item, self.item_label(batch_id, custom_id), model)
            previous = collected.items.get(custom_id)
            if not isinstance(previous, Completion):
                collected.items[custom_id] = outcome
        return collected

    def _outcome(self, item: Any, label: str, model: str) -> Completion | ProviderError:
        error = getattr(item, "error", None)
        if error is not None:
            code = getattr(error, "code", None)
            code = code if isinstance(code, int) else 2
            status = code if code >= 100 else RPC_STATUS.get(code, 500)
            message = str(getattr(error, "message", None) or f"error code {code}")
            body = {"error": error.model_dump(mode="json", exclude_none=True)}
            return classify_status(status, message, endpoint=label, model=model or None,
                                   body=body, api_key=self._api_key)
        response = getattr(item, "response", None)
        if response is None:
            return malformed(label, model or None, "the response has neither a response "
                             "nor an error", item.model_dump(mode="json", exclude_none=True),
                             self._api_key)
        try:
            parsed = self.adapter.parse(response, model)
        except ProviderError as exc:
            return exc
        return parsed



def _responses(job: Any) -> list[Any]:
    dest = getattr(job, "dest", None)
    return list(getattr(dest, "inlined_responses", None) or [])


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")
