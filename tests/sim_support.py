"""Fast simulators of nested coded data for the coverage, type-I error and power tests.

A run has seats with fixed trait propensities (one model per seat); each run draws a
run-level shift of every propensity on the logit scale (the run effect that makes agents of
one run alike), and each message flags each trait independently with the seat's shifted
propensity. Returned as arrays, not records, so that hundreds of datasets stay cheap.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from roundtable.analysis.profiles import TRAITS
from roundtable.analysis.source import CodedMessage

HETERO = np.array([[0.6 if u == t else 0.15 for u in range(len(TRAITS))]
                   for t in range(len(TRAITS))])
"""Five seats, each favouring one trait."""
SAME = np.full((5, len(TRAITS)), 0.3)
"""Five seats with identical propensities (clones)."""


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.log(p / (1 - p))


def run_flags(rng: np.random.Generator, props: npt.NDArray[np.float64], n_runs: int,
              rounds: int, run_sd: float = 0.4) -> npt.NDArray[np.bool_]:
    """Flags of shape (runs, seats, rounds, traits)."""
    shift = rng.normal(0, run_sd, size=(n_runs, 1, len(TRAITS))) if run_sd else 0.0
    p = 1 / (1 + np.exp(-(_logit(props)[None] + shift)))
    draws = rng.random((n_runs, props.shape[0], rounds, len(TRAITS)))
    return draws < p[:, :, None, :]


def run_cosines(flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Per-run mean pairwise cosine of the seats' rate vectors (all-zero vectors skipped;
    NaN when fewer than two are left)."""
    rates = flags.mean(axis=2)
    norms = np.linalg.norm(rates, axis=2)
    unit = np.divide(rates, norms[..., None], out=np.zeros_like(rates),
                     where=norms[..., None] > 0)
    sims = np.einsum("rik,rjk->rij", unit, unit)
    k = (norms > 0).sum(axis=1)
    pair_sum = (sims.sum(axis=(1, 2)) - (norms > 0).sum(axis=1)) / 2
    pairs = k * (k - 1) / 2
    return np.where(pairs > 0, pair_sum / np.maximum(pairs, 1), np.nan)


def as_messages(flags: npt.NDArray[np.bool_], first_run: int = 0, series: str = "sim",
                cell: str = "base") -> list[CodedMessage]:
    """The (runs, seats, rounds, traits) flags as coded messages, one per seat and round."""
    out = []
    n_runs, seats, rounds, _ = flags.shape
    for r in range(n_runs):
        run = first_run + r
        for s in range(seats):
            for k in range(rounds):
                out.append(CodedMessage(
                    message_id=len(out), run_id=run, run_ref=f"{series}/{run}",
                    series=series, cell=cell, conditions={}, seat_position=s,
                    display_name=f"Agent-{s}", true_label=f"model-{s}", round=k, turn=s,
                    codes={t: bool(flags[r, s, k, j]) for j, t in enumerate(TRAITS)},
                    comp_level=None))
    return out
