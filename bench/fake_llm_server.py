"""A fast fake LLM server for benchmarks: OpenAI, Anthropic and Gemini shapes, fixed latency.

    python bench/fake_llm_server.py --latency-ms 200 [--port 0]

Prints ``PORT <n>`` on its first line once it listens on 127.0.0.1, then serves until
killed. It is raw asyncio HTTP/1.1 with keep-alive (no framework, no threads), so one
process on one core answers thousands of requests per second and the client under test,
not the server, is what a benchmark measures. Every request sleeps ``latency-ms`` before
its answer. The route picks the body:

* a path ending in ``/chat/completions``: a Chat Completions answer;
* a path ending in ``/messages``: an Anthropic Messages answer;
* a path containing ``:generateContent``: a Gemini answer;
* anything else: 404 with an OpenAI-style error object.

The request body is read in full but never parsed (that would be server CPU the client
is not responsible for); the answer text cycles through a few realistic sentences.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from collections.abc import Iterator

SENTENCES = (
    "I can take the backend and the database schema; Agent-B, could you own the tests?",
    "Agreed on the split. I will draft the API contract first so the frontend can start.",
    "Let us keep the first milestone small: one endpoint, one page, and a deploy script.",
    "I disagree slightly: the schema should come after we know which queries matter most.",
)


def _openai(text: str, n: int) -> dict[str, object]:
    return {
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_700_000_000,
        "model": "bench-model", "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text, "refusal": None}}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940,
                  "prompt_tokens_details": {"cached_tokens": 768, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
    }


def _anthropic(text: str, n: int) -> dict[str, object]:
    return {
        "id": f"msg_{n}", "type": "message", "role": "assistant", "model": "bench-model",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 132, "output_tokens": 40, "cache_read_input_tokens": 768,
                  "cache_creation_input_tokens": 0},
    }


def _gemini(text: str, n: int) -> dict[str, object]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 900, "candidatesTokenCount": 40,
                          "totalTokenCount": 940, "cachedContentTokenCount": 768},
        "modelVersion": "bench-model", "responseId": f"resp-{n}",
    }


def _bodies(build: object) -> Iterator[bytes]:
    """Pre-rendered bodies, cycled: the server's per-request work stays a few µs."""
    assert callable(build)
    rendered = [json.dumps(build(text, i)).encode() for i, text in enumerate(SENTENCES)]
    return itertools.cycle(rendered)


class FakeLLMServer:
    """The asyncio protocol-free server: one coroutine per connection."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.requests = 0
        self._openai = _bodies(_openai)
        self._anthropic = _bodies(_anthropic)
        self._gemini = _bodies(_gemini)

    def _route(self, path: bytes) -> tuple[int, bytes]:
        path = path.split(b"?", 1)[0]
        if path.endswith(b"/chat/completions"):
            return 200, next(self._openai)
        if path.endswith(b"/messages"):
            return 200, next(self._anthropic)
        if b":generateContent" in path:
            return 200, next(self._gemini)
        error = {"error": {"message": f"no route {path.decode(errors='replace')}",
                           "type": "not_found", "code": 404}}
        return 404, json.dumps(error).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one keep-alive connection until the client closes it."""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, _, header_block = head.partition(b"\r\n")
                parts = request_line.split(b" ")
                path = parts[1] if len(parts) > 1 else b"/"
                length = 0
                close = False
                for line in header_block.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    lowered = name.strip().lower()
                    if lowered == b"content-length":
                        length = int(value.strip() or 0)
                    elif lowered == b"connection" and value.strip().lower() == b"close":
                        close = True
                if length:
                    await reader.readexactly(length)
                self.requests += 1
                status, body = self._route(path)
                await asyncio.sleep(self.latency_s)
                reason = b"OK" if status == 200 else b"Not Found"
                writer.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n" % (status, reason, len(body)) + body)
                await writer.drain()
                if close:
                    return
        except ConnectionError:
            return
        finally:
            writer.close()


async def serve(latency_s: float, port: int) -> None:
    """Listen on 127.0.0.1:``port`` (0: any free port), announce it, serve forever."""
    app = FakeLLMServer(latency_s)
    server = await asyncio.start_server(app.handle, "127.0.0.1", port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {bound}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.latency_ms / 1000, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
