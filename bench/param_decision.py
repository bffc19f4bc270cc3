"""CPU of the client's per-call parameter decision (``ModelClient.prepare``).

    python bench/param_decision.py

Prints microseconds per call, best of 5, for an endpoint that refuses nothing (``openai``
kind: the common case, a cached dict lookup) and one that refuses temperature and seed
(``anthropic`` kind: the request is rebuilt without them). Run it on two checkouts with
``PYTHONPATH`` to compare; on a checkout without ``prepare`` it times the old
``accepts_temperature`` check instead.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from roundtable.protocol import EndpointConfig
from roundtable.providers.base import ChatMessage, Completion, CompletionRequest, Provider
from roundtable.providers.client import ModelClient


class _Noop(Provider):
    async def complete(self, request: CompletionRequest) -> Completion:
        return Completion(text="ok")


def per_call_us(kind: str, number: int) -> float:
    """Best-of-5 microseconds of one decision on an endpoint of ``kind``."""
    request = CompletionRequest(model="m", messages=(ChatMessage("user", "x"),),
                                temperature=0.7, seed=3)
    client = ModelClient({"e": EndpointConfig(kind=kind)}, factory=lambda _n, _c: _Noop())
    client.provider("e")
    decide: Callable[[], object]
    if hasattr(client, "prepare"):
        def decide() -> object:
            return client.prepare("e", request)
    else:  # the code before providers/params.py
        def decide() -> object:
            return request.temperature is not None and not client.accepts_temperature("e")
    return min(timeit.repeat(decide, number=number, repeat=5)) / number * 1e6


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=300_000)
    args = parser.parse_args()
    for kind in ("openai", "anthropic"):
        print(f"{kind}: {per_call_us(kind, args.number):.2f} us per call")


if __name__ == "__main__":
    main()
