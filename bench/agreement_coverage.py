"""Coverage of agreement CIs when messages are nested in runs.

    python bench/agreement_coverage.py --datasets 1000 --resamples 1000

Simulates datasets of ``runs`` runs x ``per_run`` messages coded by two raters on one
binary flag. In each run the flag's prevalence (Beta(2, 5)) and the raters' accuracy
(Beta(8, 2): a rater copies the true label with that probability, else guesses at the
run's prevalence) are drawn afresh, so agreement varies between runs, as it does in real
series. The population value of each statistic is computed from the expected pooled 2 x 2
table (a million run draws). For every dataset it computes the 95% CIs of
:func:`roundtable.stats.agreement.flag_agreement` twice, resampling runs (``clusters``)
and resampling messages, and prints the share of intervals that contain the population
value, per design and statistic, with its binomial standard error.

Designs: one series like the reference study's (21 runs x 66 messages), 40 x 30, and a
whole corpus (208 runs x 30 messages). Figures are in docs/agreement.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roundtable.stats.agreement import STATISTICS, flag_agreement  # noqa: E402
from roundtable.stats.agreement import _all_from_tables as stats_of_tables  # noqa: E402

DESIGNS = ((21, 66), (40, 30), (208, 30))


def run_parameters(rng: np.random.Generator, n: int) -> tuple[npt.NDArray[np.float64], ...]:
    """Per run: the flag's prevalence and the raters' accuracy."""
    return rng.beta(2, 5, n), rng.beta(8, 2, n)


def population_values(seed: int = 12345, draws: int = 1_000_000) -> dict[str, float]:
    """Every statistic of the expected pooled table (runs of equal size)."""
    p, acc = run_parameters(np.random.default_rng(seed), draws)
    q1, q0 = acc + (1 - acc) * p, (1 - acc) * p  # P(says 1 | y = 1), P(says 1 | y = 0)
    p11 = np.mean(p * q1 * q1 + (1 - p) * q0 * q0)
    p10 = np.mean(p * q1 * (1 - q1) + (1 - p) * q0 * (1 - q0))
    p00 = 1 - p11 - 2 * p10
    table = np.array([[[p00, p10], [p10, p11]]]) * 1e9  # alpha's (n - 1) / n -> 1
    return {k: float(v[0]) for k, v in stats_of_tables(table).items()}


def dataset(rng: np.random.Generator, runs: int, per_run: int
            ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], list[int]]:
    """Two raters' codes on ``runs`` x ``per_run`` messages, and each message's run."""
    p, acc = run_parameters(rng, runs)
    a, b, cl = [], [], []
    for r in range(runs):
        y = rng.random(per_run) < p[r]
        a.append(np.where(rng.random(per_run) < acc[r], y, rng.random(per_run) < p[r]))
        b.append(np.where(rng.random(per_run) < acc[r], y, rng.random(per_run) < p[r]))
        cl += [r] * per_run
    return np.concatenate(a), np.concatenate(b), cl


def main() -> None:
    """Parse arguments, simulate, print a coverage table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=1000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--designs", default=",".join(f"{r}x{m}" for r, m in DESIGNS),
                    help="runs x messages per run, comma-separated (e.g. 21x66,40x30)")
    args = ap.parse_args()
    designs = [tuple(int(x) for x in d.split("x")) for d in args.designs.split(",")]
    truth = population_values()
    print("population values: " + ", ".join(f"{k} {v:.4f}" for k, v in truth.items()))
    print(f"{args.datasets} datasets per design, B = {args.resamples}, nominal 95%; "
          f"binomial SE {math.sqrt(0.95 * 0.05 / args.datasets):.3f}")
    print(f"{'design':>10} {'resample':>9} " + " ".join(f"{s:>8}" for s in STATISTICS)
          + f" {'SD/SE':>6}")
    for runs, per_run in designs:
        rng = np.random.default_rng(args.seed)
        hits = {"runs": dict.fromkeys(STATISTICS, 0), "messages": dict.fromkeys(STATISTICS, 0)}
        widths: dict[str, list[float]] = {"runs": [], "messages": []}
        kappas: list[float] = []
        start = time.perf_counter()
        for i in range(args.datasets):
            a, b, cl = dataset(rng, runs, per_run)
            for unit, clusters in (("runs", cl), ("messages", None)):
                fa = flag_agreement("f", a, b, bootstrap=args.resamples, seed=i,
                                    clusters=clusters)
                for s in STATISTICS:
                    lo, hi = fa.ci(s)
                    hits[unit][s] += lo <= truth[s] <= hi
                widths[unit].append(fa.kappa_ci[1] - fa.kappa_ci[0])
            kappas.append(fa.kappa)
        sd = float(np.std(kappas, ddof=1))
        for unit in ("runs", "messages"):
            # the true SD of kappa over the CI's implied SE (width / 3.92)
            ratio = sd / (float(np.mean(widths[unit])) / 3.92)
            print(f"{runs:>4} x {per_run:<3} {unit:>9} "
                  + " ".join(f"{hits[unit][s] / args.datasets:>8.3f}" for s in STATISTICS)
                  + f" {ratio:>6.2f}")
        print(f"{'':>10} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
