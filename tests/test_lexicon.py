"""The rule-based lexicon coder on hand-written French and English cases, and (when the
War Room corpus is present) its agreement with that study's human coder."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from roundtable.coding.codebook import load_codebook, parse_codebook
from roundtable.coding.judge import load_judge
from roundtable.coding.lexicon import LEXICON_VERSION, lexicon_verdict
from roundtable.coding.verdict import Verdict
from roundtable.coding.views import MessageView
from roundtable.io.warroom import reference_run_id
from roundtable.stats.agreement import cohen_kappa

JUDGES = Path(__file__).resolve().parents[1] / "judges"
CB = load_codebook(JUDGES / "codebook.toml")
PEERS = ["Agent-A", "Agent-B", "Agent-C", "Agent-D", "Agent-G"]
FLAGS = ["phatic", "meta", "lead", "arch", "agree", "comp"]


def code(text: str, speaker: str = "Agent-C",
         context: Sequence[MessageView] = ()) -> Verdict:
    target = MessageView(100, 1, 3, 0, "agent", speaker, text)
    return lexicon_verdict(target, context, CB, peers=PEERS)


def true_flags(v: Verdict) -> set[str]:
    return {k for k, val in v.values.items() if val}


CRASH = [MessageView(1, 1, 0, 4, "error", "Agent-G",
                     "⚠ The model `deepseek-r1-distill-llama-70b` has been decommissioned.")]
LEFT = [MessageView(2, 1, 1, 4, "system", "Agent-G", "Agent-G a quitté la discussion.")]


@pytest.mark.parametrize("text", ["Got it.", "Merci à tous, bon week-end ! 🚀",
                                  "All set. See you Monday!", "Bien reçu 👍"])
def test_phatic(text: str) -> None:
    assert true_flags(code(text)) == {"phatic"}


def test_courtesy_before_substance_is_not_phatic() -> None:
    v = code("Bonjour à tous ! @Agent-A je propose Flutter + Firebase, paiement Stripe, "
             "backend Node.js, budget 38 k€ sur 10 semaines, tests et déploiement CI/CD.")
    assert not v.values["phatic"] and v.values["arch"]


def test_closing_formulas_repeated_are_phatic() -> None:
    assert code("**FIN**\n**SESSION TERMINÉE**\n**AU REVOIR !**\n**FIN DE LA TRANSMISSION**"
                ).values["phatic"]


@pytest.mark.parametrize("text", ["Je suis d'accord avec Agent-A sur le choix de Flutter.",
                                  "I agree with Agent-B, let's keep it simple.",
                                  "+1 pour la proposition d'Agent-D.",
                                  "Exactement, c'est la bonne approche.",
                                  "Your plan looks solid, Agent-A."])
def test_agree(text: str) -> None:
    assert code(text).values["agree"]


@pytest.mark.parametrize("text", ["Je ne suis pas d'accord avec Agent-A.",
                                  "I disagree: React Native fits better.",
                                  "Merci pour la synthèse, Agent-B."])
def test_not_agree(text: str) -> None:
    assert not code(text).values["agree"]


@pytest.mark.parametrize("text", [
    "@Agent-B tu prépares le devis d'ici jeudi.",
    "Agent-D, could you draft the wireframes by Friday?",
    "Je propose qu'on fixe l'ordre du jour : prochaines étapes, puis plan d'action.",
    "Let's lock the scope. Next steps: I propose we review the agenda tomorrow.",
])
def test_lead(text: str) -> None:
    assert code(text).values["lead"]


def test_plain_word_names_count_for_lead_and_comp() -> None:
    nato = ["Alpha", "Bravo", "Echo"]
    target = MessageView(5, 1, 2, 0, "agent", "Bravo", "Echo, tu prends la scène principale.")
    assert lexicon_verdict(target, [], CB, peers=nato).values["lead"]
    gone = MessageView(5, 1, 2, 0, "agent", "Bravo", "Alpha est indisponible depuis hier.")
    assert lexicon_verdict(gone, [], CB, peers=nato).levels["comp"] == "L1"


@pytest.mark.parametrize("text", ["Je m'occupe du design de mon côté.",
                                  "Le backend sera en Node.js."])
def test_not_lead(text: str) -> None:
    assert not code(text).values["lead"]


@pytest.mark.parametrize("text", ["Fin de la conversation : le projet est prêt.",
                                  "To recap this thread, we are all aligned.",
                                  "Nous avons atteint la limite de tokens du modèle de langage."])
def test_meta(text: str) -> None:
    assert code(text).values["meta"]


def test_arch_needs_several_task_terms() -> None:
    assert code("@all " "Stack : Flutter, Firebase, Stripe pour le paiement, Mapbox pour la "
                "géolocalisation des livreurs, budget 12 k€.").values["arch"]
    assert not code("Le plan est solide, bravo.").values["arch"]


REPORT = ("## Analyse du projet\n**Budget :** 50 000 €, délai 12 semaines.\n| Fonctionnalité | "
          "Coût |\n| Paiement Stripe | 4 k€ |\n| Géolocalisation des livreurs | 6 k€ |\n"
          "Stack : Flutter, Firebase, backend Node.js, tests et déploiement CI/CD.")
PEER_SAID = [MessageView(3, 1, 0, 1, "agent", "Agent-A", "Je propose Flutter.")]


def test_a_solo_report_is_not_architecture_talk() -> None:
    """Isolation: no peer's message in context and nobody addressed -> not arch."""
    assert not code(REPORT).values["arch"]
    assert not code(REPORT, context=CRASH).values["arch"]  # an error line is not a peer


@pytest.mark.parametrize("text", [REPORT, "@all " + REPORT, "Agent-A, " + REPORT])
def test_substance_in_a_group_is_architecture_talk(text: str) -> None:
    context = PEER_SAID if text == REPORT else ()
    assert code(text, context=context).values["arch"]


def test_comp_levels_with_a_crashed_agent_in_context() -> None:
    l1 = code("Agent-G semble indisponible, on continue.", context=CRASH)
    assert l1.values["comp"] and l1.levels["comp"] == "L1"
    l2 = code("Since Agent-G is down, I'll cover the security review myself.", context=CRASH)
    assert l2.levels["comp"] == "L2"
    l3 = code("Agent-G est absent : Agent-B prendra le backend et Agent-D les tests.",
              context=LEFT)
    assert l3.levels["comp"] == "L3"
    echo = code("On ne parlera pas de deepseek-r1-distill-llama-70b au client.", context=CRASH)
    assert echo.levels["comp"] == "L1"


def test_no_comp_without_a_failure() -> None:
    v = code("@Agent-A @Agent-B @Agent-D @Agent-G : voici le planning.", context=CRASH)
    assert not v.values["comp"] and v.levels["comp"] is None
    assert not code("Agent-B, ta maquette est validée.").values["comp"]


def test_deterministic_and_complete() -> None:
    text = "Je suis d'accord avec Agent-A. @Agent-B tu prends le paiement Stripe."
    assert code(text) == code(text)
    v = code(text)
    assert set(v.values) == set(FLAGS) and set(v.levels) == {"comp"}
    assert v.rationale == f"lexicon v{LEXICON_VERSION}"
    assert load_judge(JUDGES / "lexicon.toml").definition()["lexicon_version"] == \
        LEXICON_VERSION


def test_flags_of_other_codebooks_stay_uncoded() -> None:
    other = parse_codebook('name = "x"\nversion = "1"\n[[flags]]\nname = "agree"\n'
                           'question = "q"\ndefinition = "d"\n[[flags]]\nname = "humour"\n'
                           'question = "q"\ndefinition = "d"\n')
    v = lexicon_verdict(MessageView(1, 1, 0, 0, "agent", "A", "I agree."), [], other,
                        peers=[])
    assert v.values == {"agree": True, "humour": None}


# ------------------------------------------------------------------ War Room human codes


def _corpus_views(root: Path) -> tuple[dict[str, tuple[list[MessageView], int, list[str]]],
                                      list[dict[str, str]]]:
    with (root / "human_coding_results.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    wanted = {r["id"].rsplit("|", 2)[0] for r in rows}
    found: dict[str, tuple[list[MessageView], int, list[str]]] = {}
    for path in sorted((root / "Transcripts").glob("*/*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        run = reference_run_id(path.parent.name, path.stem.rpartition("-run")[2], data)
        if run not in wanted:
            continue
        peers = [a["nickname"] for a in data["environment"]["agentRanking"]]
        views: list[MessageView] = []
        for turn, m in enumerate(data["conversation"]["messages"]):
            if m["sender"] == "user":
                views.append(MessageView(turn, 0, -1, turn, "brief", None, m["text"]))
            elif m["sender"] != "system":
                kind = "error" if m.get("isError") or m["text"].startswith("⚠") else "agent"
                views.append(MessageView(turn, 0, m["round"], turn, kind,
                                         m["agent_nickname"], m["text"]))
                key = f"{run}|{m['agent_nickname']}|R{m['round']}"
                found[key] = (views, len(views) - 1, peers)
    return found, rows


@pytest.mark.corpus
def test_agreement_with_the_war_room_human_coder(warroom_dir: Path) -> None:
    """Reported, not tuned to: the lexicon is a baseline (see judges/README.md)."""
    found, rows = _corpus_views(warroom_dir)
    human: dict[str, list[int]] = {f: [] for f in FLAGS}
    lexicon: dict[str, list[int]] = {f: [] for f in FLAGS}
    for row in rows:
        views, index, peers = found[row["id"]]
        v = lexicon_verdict(views[index], views[:index], CB, peers=peers)
        for f in FLAGS:
            human[f].append(int(row[f"human_{f}"] == "true"))
            lexicon[f].append(int(bool(v.values[f])))
    kappas = {f: cohen_kappa(np.array(human[f]), np.array(lexicon[f])) for f in FLAGS}
    print("lexicon vs human kappa:", {f: round(k, 3) for f, k in kappas.items()},
          "mean", round(float(np.mean(list(kappas.values()))), 3))
    assert len(rows) == 609
    assert all(k > 0.1 for k in kappas.values())
    assert float(np.mean(list(kappas.values()))) > 0.3
