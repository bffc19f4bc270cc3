"""Replicas of one self-hosted deployment behind one endpoint, routed with prefix affinity.

An endpoint may list several base URLs (``base_urls``: replicas of a vLLM, SGLang or
llama.cpp deployment). :class:`ReplicaSet` wraps one adapter per URL and is itself a
:class:`Provider`, so :class:`~roundtable.providers.client.ModelClient` sees one endpoint:
its ``max_concurrency`` and ``requests_per_minute`` apply to the whole set, and its retries
decide, as always, whether a failed call is tried again.

Routing (``EndpointConfig.routing``):

``affinity`` (default)
    Every request has an *affinity key* (:func:`affinity_key`): the run and seat of a
    discussion turn, or the judge and message of a coding call. The first call of a key goes
    to the least-loaded healthy replica (fewest calls in flight, then fewest keys held, then
    fewest calls so far); later calls of the key stick to that replica while it is healthy,
    so its prefix cache still holds the conversation. One exception keeps the load even:
    when the key's replica holds more than its share of the healthy replicas' keys and
    another holds at least two fewer (a replica came back after a failure and holds none),
    the key moves to the one holding fewest, once, and sticks there. Requests without a
    key go to the least-loaded replica.
``least_loaded``
    Every call to the least-loaded healthy replica, keys ignored.
``round_robin``
    Healthy replicas in turn.

Health: a replica whose call fails with a transient error (a 5xx, a timeout, a refused
connection: :class:`~roundtable.errors.ServerError` or
:class:`~roundtable.errors.ProviderTimeout`) is left out for a cool-down
(``options.replica_cooldown_s``, default 30 s). The error still propagates, so the client's
retry logic decides; the *next* attempt goes elsewhere and the key moves with it (to the
least-loaded healthy replica; it stays there afterwards, since that replica's cache now
holds the conversation). Permanent errors (400, 404, auth) say nothing about the replica
and do not mark it. When every replica is cooling down, calls go to the one that is due
back first. :meth:`ReplicaSet.stats` reports calls per replica, affinity hits, re-routes
and rebalancing moves;
health changes are logged on the ``roundtable.providers.replicas`` logger.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from roundtable.errors import ConfigError, ProviderError, ProviderTimeout, ServerError
from roundtable.providers.base import Completion, CompletionRequest, Provider
from roundtable.providers.config import EndpointConfig

Routing = Literal["affinity", "least_loaded", "round_robin"]

log = logging.getLogger(__name__)

#: seconds a replica that failed transiently is left out
DEFAULT_COOLDOWN_S = 30.0
#: affinity keys remembered (least recently used forgotten first)
MAX_KEYS = 65_536
#: a key unused this long is forgotten, so key counts reflect the seats still talking
KEY_IDLE_S = 600.0
#: errors that say the replica itself is in trouble
TRANSIENT: tuple[type[ProviderError], ...] = (ServerError, ProviderTimeout)


def affinity_key(request: CompletionRequest) -> str | None:
    """The key whose calls should share a replica: ``run`` + ``seat`` for a discussion turn
    (every round of a seat extends the same conversation), ``judge`` + ``message_id`` for a
    coding call (a retry after an invalid answer extends the first request); ``None`` when
    the request carries neither."""
    meta = request.metadata
    if "run" in meta and "seat" in meta:
        return f"seat\x1f{meta['run']}\x1f{meta['seat']}"
    if "judge" in meta:
        return f"judge\x1f{meta['judge']}\x1f{meta.get('message_id', '')}"
    return None


def member_configs(config: EndpointConfig) -> list[EndpointConfig]:
    """One single-URL config per replica of ``config`` (``base_url`` set, ``base_urls``
    empty), in the listed order."""
    urls = config.base_urls or ((config.base_url,) if config.base_url else ())
    return [config.model_copy(update={"base_url": url, "base_urls": ()}) for url in urls]


def cooldown_s(name: str, config: EndpointConfig) -> float:
    """``options.replica_cooldown_s`` of the endpoint, validated (default 30 s)."""
    value = config.options.get("replica_cooldown_s", DEFAULT_COOLDOWN_S)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"endpoint '{name}': options.replica_cooldown_s must be a number of "
                          f"seconds >= 0, got {value!r}")
    return float(value)


@dataclass(eq=False)
class _Replica:
    index: int
    url: str
    provider: Provider
    in_flight: int = 0
    calls: int = 0
    failures: int = 0
    keys: int = 0
    down_until: float | None = None

    def healthy(self, now: float) -> bool:
        return self.down_until is None or now >= self.down_until

    def load(self) -> tuple[int, int, int, int]:
        return self.in_flight, self.keys, self.calls, self.index


@dataclass(frozen=True, slots=True)
class ReplicaStat:
    """One replica's counters."""

    url: str
    calls: int
    failures: int
    in_flight: int
    keys: int
    healthy: bool


@dataclass(frozen=True, slots=True)
class ReplicaSetStats:
    """Counters of a :class:`ReplicaSet` since it was built.

    ``affinity_hits``: calls sent to the replica their key already had; ``reroutes``: calls
    whose key moved because its replica was cooling down; ``rebalanced``: calls whose key
    moved because its replica held more than its share of keys; ``new_keys``: keys seen
    for the first time; ``marked_down``: how often a replica was left out after a transient error.
    """

    endpoint: str
    routing: Routing
    replicas: tuple[ReplicaStat, ...]
    affinity_hits: int
    reroutes: int
    rebalanced: int
    new_keys: int
    marked_down: int

    @property
    def calls(self) -> int:
        """Calls dispatched to any replica (every attempt counts)."""
        return sum(r.calls for r in self.replicas)

    @property
    def affinity_hit_rate(self) -> float | None:
        """Of the calls whose key had been seen before, the share that stayed on its
        replica; ``None`` before any such call."""
        repeat = self.affinity_hits + self.reroutes + self.rebalanced
        return self.affinity_hits / repeat if repeat else None

    def to_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready values."""
        return {
            "endpoint": self.endpoint, "routing": self.routing, "calls": self.calls,
            "affinity_hits": self.affinity_hits, "reroutes": self.reroutes,
            "rebalanced": self.rebalanced,
            "new_keys": self.new_keys, "marked_down": self.marked_down,
            "affinity_hit_rate": self.affinity_hit_rate,
            "replicas": [
                {"url": r.url, "calls": r.calls, "failures": r.failures,
                 "in_flight": r.in_flight, "keys": r.keys, "healthy": r.healthy}
                for r in self.replicas
            ],
        }


class ReplicaSet(Provider):
    """One endpoint served by several replicas; see the module docstring."""

    def __init__(self, endpoint: str, members: Sequence[tuple[str, Provider]], *,
                 routing: Routing = "affinity", cooldown_s: float = DEFAULT_COOLDOWN_S,
                 clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS, key_idle_s: float = KEY_IDLE_S) -> None:
        if not members:
            raise ConfigError(f"endpoint '{endpoint}': base_urls lists no replica")
        self.endpoint = endpoint
        self.routing: Routing = routing
        self._replicas = [_Replica(i, url, provider)
                          for i, (url, provider) in enumerate(members)]
        self._cooldown = cooldown_s
        self._clock = clock
        self._max_keys = max_keys
        self._key_idle = key_idle_s
        #: key -> (replica, last use), least recently used first
        self._keys: OrderedDict[str, tuple[_Replica, float]] = OrderedDict()
        self._next = 0
        self._hits = 0
        self._reroutes = 0
        self._rebalanced = 0
        self._new_keys = 0
        self._marked_down = 0

    @property
    def urls(self) -> tuple[str, ...]:
        """The replicas' base URLs, in the configured order."""
        return tuple(r.url for r in self._replicas)

    def stats(self) -> ReplicaSetStats:
        """A snapshot of the counters."""
        now = self._clock()
        return ReplicaSetStats(
            endpoint=self.endpoint, routing=self.routing,
            replicas=tuple(ReplicaStat(r.url, r.calls, r.failures, r.in_flight, r.keys,
                                       r.healthy(now)) for r in self._replicas),
            affinity_hits=self._hits, reroutes=self._reroutes, rebalanced=self._rebalanced,
            new_keys=self._new_keys,
            marked_down=self._marked_down,
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        """Send the call to the replica chosen for it; a transient failure leaves that
        replica out for the cool-down, and is re-raised for the client to retry."""
        replica = self._route(request)
        replica.in_flight += 1
        replica.calls += 1
        try:
            return await replica.provider.complete(request)
        except ProviderError as exc:
            replica.failures += 1
            exc.args = (f"{exc} [replica {replica.url}]", *exc.args[1:])
            if isinstance(exc, TRANSIENT):
                self._mark_down(replica, exc)
            raise
        finally:
            replica.in_flight -= 1

    async def aclose(self) -> None:
        """Close every replica's adapter."""
        for replica in self._replicas:
            await replica.provider.aclose()

    # ------------------------------------------------------------------ routing

    def _route(self, request: CompletionRequest) -> _Replica:
        now = self._clock()
        for replica in self._replicas:
            if replica.down_until is not None and replica.healthy(now):
                replica.down_until = None
                log.info("endpoint '%s': replica %s is back in rotation", self.endpoint,
                         replica.url)
        pool = [r for r in self._replicas if r.healthy(now)]
        if not pool:
            pool = [min(self._replicas, key=lambda r: (r.down_until or 0.0, r.index))]
        if self.routing == "round_robin":
            return self._round_robin(pool)
        key = affinity_key(request) if self.routing == "affinity" else None
        if key is None:
            return min(pool, key=_Replica.load)
        self._forget_idle(now)
        entry = self._keys.get(key)
        current = entry[0] if entry is not None else None
        if current is not None and current in pool:
            target = self._lighter_than(current, pool)
            if target is None:
                target = current
                self._hits += 1
            else:
                self._rebalanced += 1
        else:
            target = min(pool, key=_Replica.load)
            if current is None:
                self._new_keys += 1
            else:
                self._reroutes += 1
        if current is not target:
            if current is not None:
                current.keys -= 1
            target.keys += 1
        self._keys[key] = (target, now)
        self._keys.move_to_end(key)
        while len(self._keys) > self._max_keys:
            _, (old, _used) = self._keys.popitem(last=False)
            old.keys -= 1
        return target

    def _lighter_than(self, home: _Replica, pool: list[_Replica]) -> _Replica | None:
        """A replica to move one of ``home``'s keys to, when ``home`` holds more than its
        share of the healthy replicas' keys and another holds at least two fewer (after a
        replica comes back, or when first calls piled up on one); otherwise ``None``."""
        if len(pool) < 2:
            return None
        fair = -(-sum(r.keys for r in pool) // len(pool))
        if home.keys <= fair:
            return None
        lightest = min(pool, key=lambda r: (r.keys, r.in_flight, r.calls, r.index))
        return lightest if lightest.keys + 1 < home.keys else None

    def _round_robin(self, pool: list[_Replica]) -> _Replica:
        n = len(self._replicas)
        for step in range(n):
            candidate = self._replicas[(self._next + step) % n]
            if candidate in pool:
                self._next = (candidate.index + 1) % n
                return candidate
        return pool[0]  # pragma: no cover - pool is never empty

    def _forget_idle(self, now: float) -> None:
        while self._keys:
            key, (replica, used) = next(iter(self._keys.items()))
            if now - used < self._key_idle:
                return
            del self._keys[key]
            replica.keys -= 1

    def _mark_down(self, replica: _Replica, exc: ProviderError) -> None:
        now = self._clock()
        already_down = not replica.healthy(now)
        replica.down_until = now + self._cooldown
        if already_down:
            return
        self._marked_down += 1
        log.warning("endpoint '%s': replica %s failed (%s); its calls go to the other "
                    "replicas for %.0f s", self.endpoint, replica.url, exc.kind,
                    self._cooldown)
