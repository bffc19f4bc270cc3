"""Start-up cost of the quick commands: CPU and wall medians, and ``-X importtime`` totals.

    python bench/startup.py                      # this checkout
    python bench/startup.py --tree /tmp/base     # A/B: this checkout and another source tree
    python bench/startup.py --runs 15 --db my.db # more repetitions, an existing database

Each command runs as a fresh ``python -m roundtable ...`` process with ``PYTHONPATH`` set to
the tree, so the tree's code wins over any installed copy (and in a scratch folder, so that
the current directory's ``roundtable/`` does not). Repetitions alternate between the
trees, so both see the same machine load. CPU is user+sys of the child (wall time is noisy
on a shared machine); the importtime total is the sum of the "self" column of one run.
Without ``--db`` a scripted two-series database (8 runs) is made first with this checkout.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
_SCRATCH = tempfile.gettempdir()

PROTOCOL = """
series = "bench"
rounds = 3
replicates = 2
[roster]
seats = ["scripted:alpha", "scripted:beta", "scripted:gamma"]
[prompt]
brief = "@all Plan a picnic."
[matrix]
"naming.scheme" = ["letters", "human"]
[prices]
"scripted:*" = { input = 1.0, output = 1.0 }
"""

COMMANDS = (
    ("--help",),
    ("runs", "--db", "{db}"),
    ("runs", "--json", "--db", "{db}"),
    ("show", "bench/1", "--db", "{db}"),
    ("db", "current", "--db", "{db}"),
)


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with bytecode caches, as users run
    return env


def _make_db(folder: Path) -> Path:
    protocol = folder / "bench.toml"
    protocol.write_text(PROTOCOL, encoding="utf-8")
    db = folder / "bench.db"
    for series in ("bench", "other"):
        protocol.write_text(PROTOCOL.replace('"bench"', f'"{series}"'), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "roundtable", "run", str(protocol), "--db",
                        str(db), "--quiet"], env=_env(HERE), check=True,
                       stdout=subprocess.DEVNULL, cwd=folder)
    return db


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "roundtable", *argv], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=_SCRATCH)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def _importtime(argv: list[str], env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "roundtable", *argv],
                          env=env, check=True, capture_output=True, text=True, cwd=_SCRATCH)
    total = 0
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            field = line.split("|")[0].split(":")[1].strip()
            if field.isdigit():
                total += int(field)
    return total / 1e6


def main() -> None:
    """Measure and print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, default=[],
                        help="another source tree to measure beside this checkout")
    parser.add_argument("--runs", type=int, default=9, help="repetitions per command")
    parser.add_argument("--db", type=Path, help="database to read (default: a new one)")
    args = parser.parse_args()
    trees = [HERE, *args.tree]
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or _make_db(Path(scratch))
        print(f"load average before: {os.getloadavg()[0]:.2f}; {args.runs} runs each")
        print("\n| command | tree | CPU s (median) | wall s (median) | importtime s |")
        print("| --- | --- | --- | --- | --- |")
        for command in COMMANDS:
            argv = [part.format(db=db) for part in command]
            samples: dict[Path, list[tuple[float, float]]] = {t: [] for t in trees}
            for _ in range(args.runs):
                for tree in trees:
                    samples[tree].append(_once(argv, _env(tree)))
            for tree in trees:
                cpu = statistics.median(s[0] for s in samples[tree])
                wall = statistics.median(s[1] for s in samples[tree])
                imports = _importtime(argv, _env(tree))
                shown = " ".join(command).replace(" --db {db}", "")
                print(f"| `roundtable {shown}` | {tree.name} | {cpu:.3f} | {wall:.3f} | "
                      f"{imports:.3f} |")
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
