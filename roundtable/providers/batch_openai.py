"""OpenAI Batch API (``/v1/batches``) through the official ``openai`` SDK.

Submitting uploads one JSONL file (``files.create(purpose="batch")``) whose lines are
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``, each body built
by :meth:`OpenAIProvider.build_params` (so structured output, ``max_completion_tokens``,
``extra_body`` and the other endpoint options apply unchanged), then creates the batch
with a 24 h window. A finished batch's output and error files are downloaded with
``files.content`` and every line is parsed by :meth:`OpenAIProvider.parse`; error lines
are classified by HTTP status like online calls. One batch runs one model.

Batching is on for api.openai.com; an OpenAI-compatible server that implements
``/batches`` opts in with ``options.batch = true`` (see
:func:`roundtable.providers.batch.batch_supported`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from roundtable.errors import BadRequest, ProviderError
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
    single_model,
)
from roundtable.providers.errors_map import (
    classify_status,
    error_text,
    malformed,
    sdk_errors,
    shorten,
)
from roundtable.providers.openai import OpenAIProvider

CHAT_URL: Final = "/v1/chat/completions"
_STATES: dict[str, BatchState] = {
    "validating": "in_progress",
    "in_progress": "in_progress",
    "finalizing": "in_progress",
    "cancelling": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}


class OpenAIBatchProvider(AdapterBatchProvider[OpenAIProvider]):
    """OpenAI Batch over an :class:`OpenAIProvider`'s client, body builder and parser."""

    max_items = 50_000

    adapter_factory = OpenAIProvider

    def line(self, custom_id: str, request: CompletionRequest) -> dict[str, Any]:
        """One input-file line: the same body an online call would send."""
        params = self.adapter.build_params(request)
        extra = params.pop("extra_body", None) or {}
        return {"custom_id": custom_id, "method": "POST", "url": CHAT_URL,
                "body": {**params, **extra}}

    async def _submit(self, items: Sequence[tuple[str, CompletionRequest]]) -> str:
        import openai

        model = single_model(self.endpoint, items)
        data = "".join(json.dumps(self.line(cid, req), ensure_ascii=False) + "\n"
                       for cid, req in items).encode()
        with sdk_errors(openai, endpoint=self.endpoint, model=model,
                        timeout_s=self.call_timeout_s, api_key=self._api_key):
            uploaded = await self._client.files.create(
                file=("roundtable-batch.jsonl", data, "application/jsonl"), purpose="batch",
                timeout=self.call_timeout_s)
            batch = await self._client.batches.create(
                input_file_id=uploaded.id, endpoint=CHAT_URL, completion_window="24h",
                metadata={"source": "roundtable"}, timeout=self.call_timeout_s)
        return str(batch.id)

    async def _retrieve(self, batch_id: str) -> Any:
        import openai

        with sdk_errors(openai, endpoint=f"{self.endpoint} batch {batch_id}", model="",
                        timeout_s=self.call_timeout_s, api_key=self._api_key):
            return await self._client.batches.retrieve(batch_id, timeout=self.call_timeout_s)

    async def poll(self, batch_id: str) -> BatchStatus:
        """``validating`` / ``in_progress`` / ``finalizing`` / ``cancelling`` are
        in progress; the terminal states map one to one."""
        return _status(await self._retrieve(batch_id))

    async def _collect(self, batch_id: str, expected: tuple[str, ...] | None) -> Collected:
        import openai

        batch = await self._retrieve(batch_id)
        status = _status(batch)
        if not status.finished:
            raise BatchNotFinished(f"{self.endpoint} batch {batch_id} is still in progress "
                                   f"({status.detail}); poll until it has finished")
        if status.state == "failed":
            raise BadRequest(f"{self.endpoint} batch {batch_id} failed: {status.detail}")
        collected = Collected()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            with sdk_errors(openai, endpoint=f"{self.endpoint} batch {batch_id}", model="",
                            timeout_s=self.call_timeout_s, api_key=self._api_key):
                content = await self._client.files.content(file_id,
                                                           timeout=self.call_timeout_s)
            for line in read_jsonl(content.text):
                label = self.item_label(batch_id, line.custom_id or "?")
                outcome = self._outcome(line.data, label) if line.data is not None else None
                add_line(collected, line, label, outcome)
        return collected

    def _outcome(self, data: dict[str, Any], label: str) -> Completion | ProviderError:
        """One output or error line as a completion or a classified error."""
        from openai.types.chat import ChatCompletion

        response = data.get("response")
        error = data.get("error")
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            status: int = response["status_code"]
            body = response.get("body")
            if 200 <= status < 300:
                if not isinstance(body, dict):
                    return malformed(label, None, "the response body is not a JSON object",
                                     data, self._api_key)
                model = str(body.get("model") or "")
                try:
                    return self.adapter.parse(ChatCompletion.construct(**body), model)
                except ProviderError as exc:
                    return exc
            return classify_status(status, error_text(body, f"HTTP {status}"),
                                   endpoint=label, body=body, api_key=self._api_key)
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            message = shorten(str(error.get("message") or code or "no message"))
            if code in ("batch_expired", "batch_cancelled"):
                return BatchItemUnprocessed(f"{label}: not processed ({code}): {message}")
            return classify_status(400, f"{message} ({code})" if code else message,
                                   endpoint=label, body={"error": error},
                                   api_key=self._api_key)
        return malformed(label, None, "the result line has neither a response nor an error",
                         data, self._api_key)



def _status(batch: Any) -> BatchStatus:
    raw = str(getattr(batch, "status", "") or "")
    counts = getattr(batch, "request_counts", None)
    detail = raw
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    messages = [str(getattr(e, "message", "") or getattr(e, "code", "")) for e in errors]
    if messages:
        detail = f"{raw}: " + "; ".join(m for m in messages if m)
    return BatchStatus(
        state=_STATES.get(raw, "in_progress"),
        total=_int(getattr(counts, "total", 0)),
        succeeded=_int(getattr(counts, "completed", 0)),
        errored=_int(getattr(counts, "failed", 0)),
        detail=shorten(detail),
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
