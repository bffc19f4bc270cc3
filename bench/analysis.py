"""Time the analysis and report sequence on the War Room corpus, command by command.

    python bench/analysis.py --db /tmp/h11/wr.db --repeat 3

Builds the database first when it does not exist (import the transcripts and the coding CSV,
adjudicate gemini+sonnet, code everything with the lexicon), then runs, as a user would,
each command of the sequence as its own process, ``--repeat`` times, and prints per command
the median wall time and the median CPU time (user + system of the child), their sum over
the sequence against the 10 s target, and how much of it is bare process start-up
(``roundtable --help``, measured the same way; not a cost of the analysis). The report
is timed twice: into a new folder each time (every figure drawn; this one counts in the
total) and again into the same folder (unchanged figures copied from its cache).

Two code sources are measured: the default adjudication (609 messages coded by the
reference study's judges) and the lexicon rater (all 13,789 messages, the dense case).
``--save DIR`` keeps every command's JSON/CSV output per source, to diff before and after a
change (``diff -r``; the report's HTML embeds a timestamp and is left out). ``--against
CHECKOUT`` runs every command under that other code too, right after each run of this code,
and prints the CPU ratio: on a shared machine only such interleaved comparisons mean much.
The load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TARGET_S = 10.0
WARM = "report again, same DIR (cached figures)"
ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("ROUNDTABLE_WARROOM_DIR", "../shared/corpora/warroom"))


@dataclass(frozen=True)
class Timing:
    """Median wall and CPU seconds of one command over the repeats."""

    name: str
    wall: float
    cpu: float


def _rt(*args: str) -> list[str]:
    return [sys.executable, "-m", "roundtable", *args]


def _run(cmd: Sequence[str], *, stdout: Path | None = None,
         code: Path | None = None) -> tuple[float, float]:
    """Run ``cmd`` (with the package imported from ``code`` when given); return (wall,
    cpu) seconds of that child alone."""
    # the package from ``code`` or this checkout, never from the current directory (which
    # ``python -m`` would put first on sys.path) nor another editable install
    env = {**os.environ, "PYTHONPATH": str(code or ROOT), "PYTHONSAFEPATH": "1"}
    # with bytecode caches, as users run (the first run writes them; a sandbox that sets
    # PYTHONDONTWRITEBYTECODE would otherwise compile every module in every process)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(stdout or os.devnull, "w", encoding="utf-8") as out:
        proc = subprocess.run(list(cmd), stdout=out, stderr=subprocess.PIPE, text=True,
                              env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def build(db: Path, corpus: Path) -> None:
    """Create the War Room database with both code sources (skipped when it exists)."""
    if db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    d = ["--db", str(db)]
    steps = [
        _rt("import", "warroom", str(corpus), *d),
        _rt("import", "codes", str(corpus / "human_coding_results.csv"),
            "--rater", "human=human_", "--rater", "gemini=gemini_",
            "--rater", "sonnet=sonnet_", "--kind", "external", "--kind", "human=human",
            "--blank", "false", *d),
        _rt("adjudicate", "--judges", "gemini,sonnet", *d),
        _rt("judge", "--judge", str(ROOT / "judges" / "lexicon.toml"), "--all", *d),
    ]
    for cmd in steps:
        print("building:", " ".join(cmd[2:]), flush=True)
        _run(cmd)


def sequence(db: Path, work: Path, source: Sequence[str]
             ) -> list[tuple[str, list[str], str | None]]:
    """(name, argv, file its output is saved as) of each command of the sequence."""
    d = ["--db", str(db)]
    return [
        ("analyze profiles", _rt("analyze", "profiles", *source, "--json", *d),
         "profiles.json"),
        ("analyze compare A B", _rt("analyze", "compare", "A", "B", *source, "--json", *d),
         "compare-AB.json"),
        ("analyze compare A B C E G H",
         _rt("analyze", "compare", "A", "B", "C", "E", "G", "H", *source, "--json", *d),
         "compare-multi.json"),
        ("agreement --judges gemini,sonnet,human",
         _rt("agreement", "--judges", "gemini,sonnet,human", "--json", *d), "agreement.json"),
        # a new folder each time: every figure drawn (the cold case, counted in the total)
        ("report --out DIR", _rt("report", "--out", str(work / "report-{i}"), *source, *d),
         None),
        # the same folder again: unchanged figures come from its cache (not in the total)
        (WARM, _rt("report", "--out", str(work / "report-0"), *source, *d), None),
        ("export --format parquet --coded",
         _rt("export", "--format", "parquet", "--coded", "--quiet",
             "--out", str(work / "corpus.parquet"), *d), None),
    ]


def measure(db: Path, source: Sequence[str], repeat: int, save: Path | None,
            against: Path | None = None) -> list[Timing]:
    """Median timings of each command of the sequence under ``source``. With ``against``
    (a checkout of other code), each repeat runs the command under that code too, right
    after this code's run, and the baseline's medians are returned as well (named
    ``"<command> [against]"``)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="rt-bench-") as tmp:
        work = Path(tmp)
        for name, cmd, saved in sequence(db, work, source):
            walls, cpus, base_walls, base_cpus = [], [], [], []
            for i in range(repeat):
                target = save / saved if save is not None and saved else None
                wall, cpu = _run([c.replace("{i}", str(i)) for c in cmd], stdout=target)
                walls.append(wall)
                cpus.append(cpu)
                if against is not None:
                    wall, cpu = _run([c.replace("{i}", f"b{i}") for c in cmd], code=against)
                    base_walls.append(wall)
                    base_cpus.append(cpu)
            out.append(Timing(name, statistics.median(walls), statistics.median(cpus)))
            line = f"  {name:<42} wall {out[-1].wall:6.2f} s   cpu {out[-1].cpu:6.2f} s"
            if against is not None:
                base = Timing(f"{name} [against]", statistics.median(base_walls),
                              statistics.median(base_cpus))
                out.append(base)
                line += (f"   | against: wall {base.wall:6.2f} s   cpu {base.cpu:6.2f} s   "
                         f"cpu ratio {out[-2].cpu / base.cpu:4.2f}")
            print(line, flush=True)
        if save is not None:
            for csv in sorted((work / "report-0").glob("*.csv")):
                shutil.copy(csv, save / f"report-{csv.name}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or reuse) the database, time the sequence per source, print the totals."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=Path("/tmp/rt-bench-warroom.db"))
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--source", choices=("adjudication", "lexicon", "both"), default="both")
    ap.add_argument("--save", type=Path, default=None,
                    help="keep each command's JSON/CSV output here, one folder per source")
    ap.add_argument("--against", type=Path, default=None,
                    help="a checkout of other code (e.g. `git worktree add /tmp/base "
                         "COMMIT`): each command also runs under it, interleaved, and the "
                         "CPU ratio is printed")
    args = ap.parse_args(argv)
    if args.against is not None and not (args.against / "roundtable").is_dir():
        ap.error(f"--against {args.against}: no roundtable package in that folder")
    build(args.db, args.corpus)
    # bytecode caches for every measured tree, as an installed package has them (pip
    # compiles at install); they go to __pycache__, which git ignores
    for tree in [ROOT] + ([args.against] if args.against is not None else []):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "roundtable")],
                       check=True, stdout=subprocess.DEVNULL)
    print("load average at start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))

    walls, cpus = [], []
    for _ in range(args.repeat):
        w, c = _run(_rt("--help"))
        walls.append(w)
        cpus.append(c)
    startup = Timing("start-up (roundtable --help)", statistics.median(walls),
                     statistics.median(cpus))
    print(f"start-up (roundtable --help): wall {startup.wall:.2f} s, cpu {startup.cpu:.2f} s "
          f"(median of {args.repeat})")

    sources = {"adjudication": [], "lexicon": ["--rater", "lexicon"]}
    chosen = list(sources) if args.source == "both" else [args.source]
    for name in chosen:
        save = args.save / name if args.save is not None else None
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
        print(f"source {name} (medians of {args.repeat}):", flush=True)
        timings = measure(args.db, sources[name], args.repeat, save, args.against)
        if args.against is not None:
            base = [t for t in timings if t.name.endswith(" [against]")
                    and not t.name.startswith(WARM)]
            print(f"  against: total wall {sum(t.wall for t in base):.2f} s, cpu "
                  f"{sum(t.cpu for t in base):.2f} s")
        counted = [t for t in timings if t.name != WARM and not t.name.endswith(" [against]")]
        total = sum(t.wall for t in counted)
        cpu = sum(t.cpu for t in counted)
        starts = startup.wall * len(counted)
        verdict = "within" if total <= TARGET_S else "OVER"
        print(f"  total: wall {total:.2f} s, cpu {cpu:.2f} s -- {verdict} the "
              f"{TARGET_S:.0f} s target; of it {starts:.2f} s is {len(counted)} process "
              f"start-ups ({total - starts:.2f} s of work; cpu of the start-ups "
              f"{startup.cpu * len(counted):.2f} s)")
    print("load average at the end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
