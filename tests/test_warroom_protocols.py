"""protocols/warroom/*.toml: each reference series expressed as a roundtable protocol.

The structural checks run everywhere; the comparisons with the reference corpus (prompts,
briefs, rosters, replicates, the crash text) need ../shared/corpora/warroom and skip
without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from roundtable.io.warroom import render_reference_prompt
from roundtable.protocol import Protocol, RunSpec, expand, load_protocol

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = REPO / "protocols" / "warroom"
SERIES = ("A", "B", "C", "E", "F", "G", "H", "I", "J", "K1", "K2", "K3")
# series -> (runs in the corpus, rounds)
EXPECTED = {
    "A": (21, 11), "B": (21, 11), "C": (21, 11), "E": (21, 11), "F": (21, 1), "G": (21, 11),
    "H": (15, 11), "I": (11, 11), "J": (11, 21), "K1": (15, 11), "K2": (15, 11), "K3": (15, 11),
}
DEEPSEEK = "deepseek-r1-distill-llama-70b"


def corpus_dir() -> Path:
    env = os.environ.get("ROUNDTABLE_WARROOM_DIR")
    return Path(env) if env else REPO.parent / "shared" / "corpora" / "warroom"


needs_corpus = pytest.mark.skipif(
    not (corpus_dir() / "Transcripts").is_dir(),
    reason="War Room corpus not found (set ROUNDTABLE_WARROOM_DIR)",
)


def runs_of(series: str) -> list[dict[str, Any]]:
    files = sorted((corpus_dir() / "Transcripts" / series).glob("warroom-*.json"))
    return [json.loads(f.read_text(encoding="utf-8")) for f in files]


def protocol(series: str) -> Protocol:
    return load_protocol(PROTOCOLS / f"{series}.toml")


def first_run(series: str) -> RunSpec:
    return expand(protocol(series))[0]


def test_one_protocol_per_series_and_nothing_else() -> None:
    assert sorted(p.stem for p in PROTOCOLS.glob("*.toml")) == sorted(SERIES)


@pytest.mark.parametrize("series", SERIES)
def test_protocol_loads_and_expands(series: str) -> None:
    proto = protocol(series)
    runs = expand(proto)
    n_runs, rounds = EXPECTED[series]
    assert proto.series == f"warroom-{series}"
    assert len(runs) == n_runs
    assert {r.replicate for r in runs} == set(range(1, n_runs + 1))
    for run in runs:
        assert len(run.seats) == 8
        assert run.rounds == rounds
        assert run.turns.scheme == "staggered" and run.turns.stagger_ms == 1200
        assert not run.deterministic
        assert run.turns.peer_format == "[{name}]: {text}"
        assert run.sampling.temperature == (0.95 if series == "I" else 0.8)
        assert run.sampling.max_tokens == 1024 and run.sampling.timeout_s == 30.0
        assert run.failures.show_errors
        assert {s.endpoint for s in run.seats} == {"groq"}
        assert run.isolation == (series == "F")
        assert run.turns.order == ("shuffle_run" if series == "E" else "fixed")


def test_series_total_is_the_corpus_total() -> None:
    assert sum(len(expand(protocol(s))) for s in SERIES) == 208


@pytest.mark.parametrize("series", SERIES)
def test_crash_is_an_injected_fault_on_the_deepseek_seat(series: str) -> None:
    run = first_run(series)
    if series == "B":
        assert run.faults == ()
        assert {s.model for s in run.seats} == {"llama-3.3-70b-versatile"}
        assert [s.display_name for s in run.seats][:3] == ["Alpha", "Bravo", "Charlie"]
        return
    (fault,) = run.faults
    assert (fault.round, fault.mode) == (0, "error")
    assert run.seats[fault.position].model == DEEPSEEK
    assert fault.message.startswith("⚠ The model `deepseek-r1-distill-llama-70b` has been")


def test_shuffled_order_differs_between_runs_of_e_only() -> None:
    from roundtable.conditions import speaking_order

    def orders(series: str) -> set[tuple[int, ...]]:
        return {
            tuple(speaking_order(r.turns.order, 8, run_seed=r.seed, round_index=0))
            for r in expand(protocol(series))
        }

    assert len(orders("E")) > 15
    assert orders("A") == {tuple(range(8))}


# --------------------------------------------------------------------------- vs the corpus


@needs_corpus
@pytest.mark.corpus
@pytest.mark.parametrize("series", SERIES)
def test_prompts_names_and_roster_match_the_first_reference_run(series: str) -> None:
    ref = runs_of(series)[0]
    env = ref["environment"]
    ranking = sorted(env["agentRanking"], key=lambda a: a["position"])
    nicknames = [a["nickname"] for a in ranking]
    run = first_run(series)
    for seat, entry in zip(run.seats, ranking, strict=True):
        others = [n for n in nicknames if n != entry["nickname"]]
        expected = render_reference_prompt(env["systemPromptTemplate"], entry["nickname"], others)
        assert seat.system_prompt == expected
        assert seat.display_name == entry["nickname"]
        if series != "E":  # E's reference shuffled which model sat at which position
            assert seat.model == entry["model"]
            assert seat.label == (ref["condition"].get("cloneModelName") or entry["name"])
    assert sorted(s.model for s in run.seats) == sorted(a["model"] for a in ranking)


@needs_corpus
@pytest.mark.corpus
@pytest.mark.parametrize("series", SERIES)
def test_brief_sampling_rounds_and_replicates_match_the_corpus(series: str) -> None:
    refs = runs_of(series)
    proto = protocol(series)
    assert proto.replicates == len(refs)
    for ref in refs:
        assert ref["conversation"]["messages"][0]["sender"] == "user"
        assert ref["conversation"]["messages"][0]["text"] == proto.prompt.brief
        assert ref["conversation"]["userPrompt"] == proto.prompt.brief
        assert ref["condition"]["temperature"] == proto.sampling.temperature
        assert ref["environment"]["staggerMs"] == proto.turns.stagger_ms
        single = ref["condition"]["mode"] == "single"
        assert proto.rounds == (1 if single else ref["environment"]["maxRounds"] + 1)
        rounds_seen = {m["round"] for m in ref["conversation"]["messages"] if "round" in m}
        assert max(rounds_seen) < proto.rounds


@needs_corpus
@pytest.mark.corpus
@pytest.mark.parametrize("series", [s for s in SERIES if s != "B"])
def test_fault_message_is_the_corpus_error_text(series: str) -> None:
    (fault,) = first_run(series).faults
    texts = {
        m["text"]
        for ref in runs_of(series)
        for m in ref["conversation"]["messages"]
        if m.get("model_id") == DEEPSEEK and m.get("round") == 0
    }
    assert texts == {fault.message}


@needs_corpus
@pytest.mark.corpus
def test_e_reference_shuffled_the_order_once_per_run() -> None:
    orders = [
        tuple(a["key"] for a in sorted(r["environment"]["agentRanking"],
                                       key=lambda a: a["position"]))
        for r in runs_of("E")
    ]
    assert len(set(orders)) == len(orders) == 21
    for ref in runs_of("E"):  # fixed within a run: every message keeps its seat's position
        pos = {a["nickname"]: a["position"] for a in ref["environment"]["agentRanking"]}
        assert all(m["position"] == pos[m["agent_nickname"]]
                   for m in ref["conversation"]["messages"] if "agent_nickname" in m)
