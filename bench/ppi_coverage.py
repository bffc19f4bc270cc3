"""Coverage and type-I error of the corrected prevalence (roundtable.stats.ppi), by
simulation.

    python bench/ppi_coverage.py --reps 2000 --seed 1 [--out coverage.png]

Each simulated dataset is one pair of groups, A and B. A group has ``runs`` runs of
``per`` messages; run prevalences vary around the group's prevalence (Beta with
concentration 8: messages of a run are correlated, so runs are the units). The true flag
is what a human would code. A biased judge misses a share of the true positives --
unevenly: ``miss_a`` in A, ``miss_b`` in B -- and adds 3 % false positives. The human
sample is stratified by the judge's label (``take`` judge positives and ``take`` judge
negatives per group, the weight of an item its pool size / ``take``), i.e. enriched with
judge positives, so the weights matter.

For every scenario it prints, over ``reps`` datasets: the coverage of the nominal 95 %
CI of A's prevalence, naive (the judge's share, run-clustered CI) and corrected; the
mean corrected CI width; the bias; and for the difference A - B the coverage, and the
rejection rate of "no difference" when A and B have the same true prevalence (type-I
error; the naive test is misled by the uneven bias). See docs/prevalence.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roundtable.stats.ppi import Estimate, difference, ppi_mean  # noqa: E402

Data = tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64],
             NDArray[np.float64]]


@dataclass(frozen=True)
class Scenario:
    """One simulation setting."""

    name: str
    runs: int = 20
    per: int = 30
    take: int = 100
    p_a: float = 0.3
    p_b: float = 0.5
    miss_a: float = 0.3
    miss_b: float = 0.1


SCENARIOS = (
    Scenario("base: 20 runs x 30, 100+100 human"),
    Scenario("small human sample: 25+25", take=25),
    Scenario("medium human sample: 50+50", take=50),
    Scenario("large human sample: 200+200", take=200),
    Scenario("few runs: 8 x 75", runs=8, per=75),
    Scenario("many runs: 60 x 10", runs=60, per=10),
    Scenario("rare flag: p 0.08 / 0.15", p_a=0.08, p_b=0.15),
    Scenario("no true difference (type I)", p_a=0.3, p_b=0.3),
    Scenario("no true difference, small sample", p_a=0.3, p_b=0.3, take=25),
)


def dataset(rng: np.random.Generator, p: float, miss: float, sc: Scenario) -> Data:
    """One group: judge labels, runs, the human sample's indices, labels and weights."""
    rate = rng.beta(p * 8, (1 - p) * 8, sc.runs)
    clusters = np.repeat(np.arange(sc.runs), sc.per)
    truth = rng.random(sc.runs * sc.per) < rate[clusters]
    judge = np.where(truth, rng.random(truth.size) >= miss, rng.random(truth.size) < 0.03)
    idx: list[int] = []
    w: list[float] = []
    for value in (True, False):
        pool = np.flatnonzero(judge == value)
        k = min(sc.take, pool.size)
        if k:
            idx.extend(rng.choice(pool, k, replace=False).tolist())
            w.extend([pool.size / k] * k)
    lab = np.asarray(idx, dtype=np.int64)
    return (judge.astype(float), clusters, lab, truth[lab].astype(float),
            np.asarray(w, dtype=float))


def _covers(e: Estimate, truth: float) -> bool:
    return bool(e.ci[0] <= truth <= e.ci[1])


def _rejects(e: Estimate) -> bool:
    return bool(e.ci[0] > 0 or e.ci[1] < 0)


def run(sc: Scenario, reps: int, seed: int) -> dict[str, float]:
    """The figures of one scenario over ``reps`` datasets."""
    rng = np.random.default_rng(seed)
    naive = corr = diff_cov = rej_corr = rej_naive = 0
    width: list[float] = []
    errors: list[float] = []
    for _ in range(reps):
        a = ppi_mean(*dataset(rng, sc.p_a, sc.miss_a, sc))
        b = ppi_mean(*dataset(rng, sc.p_b, sc.miss_b, sc))
        naive += _covers(a.naive, sc.p_a)
        corr += _covers(a.corrected, sc.p_a)
        width.append(a.corrected.ci[1] - a.corrected.ci[0])
        errors.append(a.corrected.value - sc.p_a)
        d = difference(a.corrected, b.corrected)
        diff_cov += _covers(d, sc.p_a - sc.p_b)
        rej_corr += _rejects(d)
        rej_naive += _rejects(difference(a.naive, b.naive))
    return {"naive": naive / reps, "corrected": corr / reps,
            "width": float(np.mean(width)), "bias": float(np.mean(errors)),
            "diff": diff_cov / reps, "reject_corrected": rej_corr / reps,
            "reject_naive": rej_naive / reps}


def main(argv: list[str] | None = None) -> None:
    """Run every scenario and print one table (and optionally a figure)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="write a coverage figure (PNG)")
    args = ap.parse_args(argv)
    se = (0.95 * 0.05 / args.reps) ** 0.5
    print(f"{args.reps} datasets per scenario, seed {args.seed}; a coverage of 0.95 has a "
          f"Monte Carlo standard error of {se:.3f}.")
    head = (f"{'scenario':<36} {'naive':>6} {'corr':>6} {'width':>6} {'bias':>7} "
            f"{'diff':>6} {'rej':>6} {'rej_nv':>6}")
    print(head)
    print("-" * len(head))
    results = []
    for k, sc in enumerate(SCENARIOS):
        r = run(sc, args.reps, args.seed + k)
        results.append((sc, r))
        print(f"{sc.name:<36} {r['naive']:>6.3f} {r['corrected']:>6.3f} {r['width']:>6.3f} "
              f"{r['bias']:>+7.4f} {r['diff']:>6.3f} {r['reject_corrected']:>6.3f} "
              f"{r['reject_naive']:>6.3f}")
    print("naive/corr: coverage of A's 95% CI; width: mean corrected CI width; bias: mean "
          "corrected - truth;\ndiff: coverage of the A - B CI; rej / rej_nv: share of "
          "datasets where the corrected / naive\nA - B CI excludes 0 (type-I error when "
          "A and B have the same true prevalence).")
    if args.out is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 4.5), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ys = list(range(len(results)))
        ax.plot([r["naive"] for _, r in results], ys, "o", label="naive (judge only)")
        ax.plot([r["corrected"] for _, r in results], ys, "D", label="corrected")
        ax.axvline(0.95, color="#444444", ls="--", lw=1)
        ax.axvspan(0.95 - 2 * se, 0.95 + 2 * se, color="#bbbbbb", alpha=0.4, lw=0)
        ax.set_yticks(ys, [sc.name for sc, _ in results])
        ax.invert_yaxis()
        ax.set_xlabel("coverage of the nominal 95 % CI")
        ax.legend(loc="lower left", frameon=False)
        fig.savefig(args.out, format="png", facecolor="white")
        print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
