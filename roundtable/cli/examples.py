"""Example command lines shown under "Examples" in every ``--help`` screen.

One table, command path -> 1-3 lines that really work (files named here ship in the
repository; names such as ``A``, ``gemini`` or ``alice`` are those of the War Room corpus
and the judges in ``judges/``). ``tests/test_cli_help.py`` fails when a command has no
entry, when an entry names no command, or when a line does not parse.
"""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "roundtable": (
        "roundtable run protocols/demo.toml --dry-run",
        "roundtable run protocols/demo.toml",
        "roundtable show demo/1",
    ),
    "roundtable run": (
        "roundtable run protocols/demo.toml --dry-run",
        "roundtable run protocols/demo.toml --max-cost 5 --concurrency 32",
        "roundtable run protocols/demo.toml --db postgresql+psycopg://me@db/rt",
    ),
    "roundtable runs": (
        "roundtable runs",
        "roundtable runs --series A --series F --status incomplete",
        "roundtable runs --json",
    ),
    "roundtable show": (
        "roundtable show demo/1",
        "roundtable show A-run07 --reasoning",
        "roundtable show demo/1 --json",
    ),
    "roundtable agreement": (
        "roundtable agreement --judges gemini,claude --codebook judges/codebook.toml",
        "roundtable agreement --judges gemini --judges claude --by series -s A -s F",
        "roundtable agreement --coder alice --sample s1 --json",
    ),
    "roundtable adjudicate": (
        "roundtable adjudicate --judges gemini,claude",
        "roundtable adjudicate --judges gemini,claude,gpt --rule majority",
    ),
    "roundtable judge": (
        "roundtable judge --judge judges/lexicon.toml --series demo",
        "roundtable judge -j judges/gemini.toml -j judges/claude.toml --limit 50",
        "roundtable judge -j judges/gemini.toml --batch --wait",
    ),
    "roundtable report": (
        "roundtable report --out report",
        "roundtable report --out report -s A -s F --agreement gemini,claude",
    ),
    "roundtable view": (
        "roundtable view",
        "roundtable view --port 9000 --open --report report",
    ),
    "roundtable db": (
        "roundtable db current",
        "roundtable db upgrade --db roundtable.db",
    ),
    "roundtable db upgrade": (
        "roundtable db upgrade",
        "roundtable db upgrade --db postgresql+psycopg://me@db.example/rt",
    ),
    "roundtable db current": (
        "roundtable db current --db roundtable.db",
    ),
    "roundtable import": (
        "roundtable import warroom ../shared/corpora/warroom",
        "roundtable import codes human.csv --rater alice=h_ --kind human",
    ),
    "roundtable import warroom": (
        "roundtable import warroom ../shared/corpora/warroom",
        "roundtable import warroom ../shared/corpora/warroom --db warroom.db",
    ),
    "roundtable import codes": (
        "roundtable import codes human.csv --rater alice=h_ --kind human",
        "roundtable import codes coded.csv --rater gemini=g_ --rater sonnet=s_",
    ),
    "roundtable analyze": (
        "roundtable analyze profiles",
        "roundtable analyze compare A F",
        "roundtable analyze flags -s A --json",
    ),
    "roundtable analyze profiles": (
        "roundtable analyze profiles",
        "roundtable analyze profiles -s A -s B --per run --rater gemini",
    ),
    "roundtable analyze compare": (
        "roundtable analyze compare A F",
        "roundtable analyze compare A '*:isolatedMode=true' --json",
        "roundtable analyze compare A B+C --ci bca --correction bonferroni --json",
    ),
    "roundtable analyze flags": (
        "roundtable analyze flags",
        "roundtable analyze flags -s A -s B --pooled --test kruskal",
    ),
    "roundtable analyze crash": (
        "roundtable analyze crash",
        "roundtable analyze crash --origin injected --per-run",
    ),
    "roundtable analyze isolation": (
        "roundtable analyze isolation",
        "roundtable analyze isolation -s A -s F --correction none --json",
    ),
    "roundtable analyze prevalence": (
        "roundtable analyze prevalence --human alice --judges gemini,claude",
        "roundtable analyze prevalence --human alice --sample s1 --contrast A:F",
    ),
    "roundtable analyze sensitivity": (
        "roundtable analyze sensitivity --judges gemini,claude",
        "roundtable analyze sensitivity --judges gemini --judges claude --human alice",
    ),
    "roundtable analyze attrition": (
        "roundtable analyze attrition",
        "roundtable analyze attrition -s demo --json",
    ),
    "roundtable review": (
        "roundtable review sample --name s1 --size 609 --stratify series --seed 1",
        "roundtable review code --sample s1 --coder alice",
        "roundtable review status",
    ),
    "roundtable review sample": (
        "roundtable review sample --name s1 --size 609 --stratify series --seed 1",
        "roundtable review sample --name s2 --size 90 --seed 2 --stratify model",
    ),
    "roundtable review status": (
        "roundtable review status",
        "roundtable review status --sample s1",
    ),
    "roundtable review disagreements": (
        "roundtable review disagreements --sample s1 --coder alice",
        "roundtable review disagreements --sample s1 --coder alice --flag lead",
    ),
    "roundtable review code": (
        "roundtable review code --sample s1 --coder alice",
        "roundtable review code --sample s2 --coder bob",
    ),
    "roundtable plan": (
        "roundtable plan power --difference 0.05 --pilot A",
        "roundtable plan power --difference 0.1 --sd 0.08 --mean 0.6",
    ),
    "roundtable plan power": (
        "roundtable plan power --difference 0.05 --pilot A",
        "roundtable plan power --difference .1 --sd .1 --mean .3 --metric prevalence",
        "roundtable plan power --difference 0.1 --sd 0.08 --mean 0.6 --json",
    ),
    "roundtable export": (
        "roundtable export --out corpus.csv --coded",
        "roundtable export --out corpus.parquet --coded --anonymize -s A -s F",
        "roundtable export warroom --out warroom-json",
    ),
    "roundtable export warroom": (
        "roundtable export warroom --out warroom-json",
        "roundtable export warroom --out warroom-json -s demo",
    ),
    "roundtable db metadata": (
        "roundtable db metadata --out metadata.json",
        "roundtable db metadata --out metadata.json --name warroom",
    ),
    "roundtable db derive": (
        "roundtable db derive",
        "roundtable db derive --series A",
    ),
    "roundtable db heads": (
        "roundtable db heads",
    ),
    "roundtable db revision": (
        'roundtable db revision -m "add code table"',
        'roundtable db revision -m "data fix" --empty',
    ),
    "roundtable export warroom-coded": (
        "roundtable export warroom-coded --out data --judges gemini,sonnet",
        "roundtable export warroom-coded --out d --judges gemini --judges sonnet=claude",
    ),
    "roundtable coder": (
        "roundtable coder train --from alice --name tfidf-alice --apply",
        "roundtable coder apply --name tfidf-alice --series A",
    ),
    "roundtable coder train": (
        "roundtable coder train --from alice --name tfidf-alice",
        "roundtable coder train --from gemini --name tfidf-gemini --folds 10 --json",
        "roundtable coder train --from alice --name tfidf-alice --apply",
    ),
    "roundtable coder apply": (
        "roundtable coder apply --name tfidf-alice",
        "roundtable coder apply --name tfidf-alice --series A --series F",
    ),
    "roundtable sit": (
        "roundtable sit human-demo/1 --seat Moderator",
        "roundtable sit 12 --seat Moderator --who alice",
    ),
}
