"""Simultaneous rounds build each prompt from the seat's previous one plus the last round's
lines; it must be exactly the prompt rendered from the whole transcript."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_engine_support import make_client, make_engine, make_protocol

from roundtable.engine import discussion as discussion_mod
from roundtable.engine.runner import run_series
from roundtable.engine.transcript import render, visible_for
from roundtable.providers.base import CompletionRequest


@pytest.mark.parametrize("extra", [
    {},
    {"order": "shuffle_round"},
    {"prompt": {"scaffold": "isolation"}},
    {"faults": [{"seat": 2, "round": 1, "mode": "error", "message": "⚠ model retired"},
                {"seat": 1, "round": 2, "mode": "departure", "message": "B left"}],
     "fail": [{"model": "m3", "round": 1, "error": "bad_request"}],
     "failures": {"show_errors": True}},
])
async def test_incremental_prompts_are_the_full_rendering(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]) -> None:
    incremental = 0
    original = discussion_mod.Discussion.request_for

    def checked(self: discussion_mod.Discussion, r: int, k: int, p: int
                ) -> CompletionRequest:
        nonlocal incremental
        incremental += self._simultaneous_prompt(r, p) is not None
        request = original(self, r, k, p)
        seat = self.spec.seats[p]
        full = render(position=p, system_prompt=seat.system_prompt, brief=self.spec.brief,
                      entries=visible_for(self.entries, scheme="simultaneous",
                                          round_index=r, turn=k),
                      names=self.names, peer_format=self.spec.turns.peer_format,
                      isolation=self.spec.isolation)
        assert request.messages == full, (r, p)
        return request

    monkeypatch.setattr(discussion_mod.Discussion, "request_for", checked)
    protocol, text = make_protocol(rounds=4, seats=4, replicates=2, **extra)
    engine = make_engine(tmp_path / "db.sqlite")
    result = await run_series(engine, protocol, text, make_client(protocol))
    assert result.total_runs == 2
    assert incremental >= 2 * 3 * 2  # rounds 1-3 of both runs, most seats: the fast path
    engine.dispose()
