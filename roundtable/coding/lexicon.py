"""A rule-based lexicon coder: the cheap baseline and offline second rater.

Deterministic, no model, no network. Each War Room flag has French and English cue lists
and a simple rule (text is NFKC-normalised, lower-cased, with typographic apostrophes and
dashes unified; ``<think>`` blocks and a leading ``[Agent-X]:`` self-label are ignored):

* ``phatic``: a short message (at most 25 words) made of greetings, thanks,
  acknowledgements or farewells and without task vocabulary or figures; or a message whose
  lines are mostly closing formulas;
* ``agree``: an explicit agreement cue ("je suis d'accord", "I agree", "+1", "exactement",
  "looks solid", "je valide" …) that is not negated ("pas d'accord", "disagree");
* ``lead``: an assignment to a named peer (a peer's name with an assignment verb or an
  owner column in the same line), or three distinct directing cues ("je propose", "let's",
  "prochaines étapes", "next steps", "je déclare" …);
* ``meta``: one cue about the conversation, its state, roles or the agents' nature
  ("cette discussion", "thread", "récapitulatif", "my role", "language model" …);
* ``arch``: at least six distinct task or technical terms, or four with a figure, in a
  message addressed to the group: a *solo answer* -- no other agent's message in its
  context (isolation runs, where no peer is shown) -- counts only when it names a peer or
  uses an ``@`` address (the first speaker of a group run usually does; an isolated agent
  writing a stand-alone report does not, and the study's judges do not code those reports
  as architecture talk: 4.2 % of isolation messages flagged against 64.3 % in the baseline);
* ``comp``: the message repeats a model id from an error line in the context, or puts a
  failure or absence cue ("indisponible", "crashed", "décommissionné", "sans lui" …) in
  the same sentence as a peer's name (merely addressing a crashed agent in an ``@all``
  list of names does not count: agents do that out of habit). Level L3 when it reassigns
  work ("X prendra", "let's split", "redistribuer"), L2 when the speaker takes over
  ("je prends en charge", "I'll cover"), L1 otherwise.

Flags of other codebooks are left uncoded (``None``). Measured against the War Room human
codes, this is a baseline, not a substitute for the judges: see ``judges/README.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from roundtable.coding.codebook import Codebook
from roundtable.coding.verdict import Verdict
from roundtable.coding.views import MessageView
from roundtable.coding.xref import named_peers, normalise
from roundtable.store.vocab import MessageKind

#: bumped whenever a rule or cue list changes (stored in the lexicon rater's definition)
LEXICON_VERSION = "2"

_THINK = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|$)", re.DOTALL | re.IGNORECASE)
_SELF_LABEL = re.compile(r"^\W*\[?@?[^\]\n:]{1,40}\]\s*:\s*")
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")
_FIGURE = re.compile(r"\d")
_TICKED = re.compile(r"`([^`\s]{4,80})`")
_MODEL_ID = re.compile(r"\b[a-z0-9]+(?:[-/.][a-z0-9]+){2,}\b")


class CueSet:
    """A list of lower-case cues, found by plain substring search (fast) on text whose
    whitespace is collapsed to single spaces. A cue that starts or ends with a letter or
    digit must sit on a word boundary there."""

    def __init__(self, *items: str) -> None:
        self.items = tuple(dict.fromkeys(" ".join(i.split()) for i in items))

    def count(self, text: str) -> int:
        """How many distinct cues occur in ``text``."""
        flat = " ".join(text.split())
        return sum(1 for cue in self.items if _occurs(flat, cue))

    def found(self, text: str) -> bool:
        """Whether any cue occurs in ``text``."""
        flat = " ".join(text.split())
        return any(_occurs(flat, cue) for cue in self.items)


def _occurs(text: str, cue: str) -> bool:
    check_left, check_right = _is_word(cue[0]), _is_word(cue[-1])
    index = text.find(cue)
    while index != -1:
        end = index + len(cue)
        if (not check_left or index == 0 or not _is_word(text[index - 1])) and \
                (not check_right or end == len(text) or not _is_word(text[end])):
            return True
        index = text.find(cue, index + 1)
    return False


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _hits(cues: CueSet, text: str) -> int:
    return cues.count(text)


PHATIC = CueSet(
    "bonjour", "salut", "hello", "hi", "hey", "merci", "thanks", "thank you", "got it",
    "noted", "bien reçu", "reçu", "compris", "ok", "okay", "parfait", "super", "great",
    "all set", "sounds good", "au revoir", "bye", "goodbye", "see you", "à bientôt",
    "à lundi", "à demain", "bonne journée", "bonne soirée", "bon week-end", "bonne fin",
    "bonne chance", "good luck", "have a great", "enjoy", "cheers", "fin", "terminé",
    "terminée", "à tous", "everyone", "team", "l'équipe", "🚀", "🙏", "👍", "✅",
)
CLOSING = CueSet(
    "fin", "terminé", "terminée", "au revoir", "bye", "goodbye", "fermé", "fermée",
    "clôturé", "éteint", "arrêté", "déconnecté", "see you", "à bientôt", "bonne chance",
    "good luck", "closed", "signing off",
)
AGREE = CueSet(
    "je suis d'accord", "suis entièrement d'accord", "tout à fait d'accord", "d'accord avec",
    "je suis aligné", "je suis alignée", "je rejoins", "je partage l'avis", "je valide",
    "je soutiens", "exactement", "absolument", "+1", "i agree", "agreed", "i fully agree",
    "totally agree", "completely agree", "in agreement", "i second", "sounds good",
    "looks good", "looks solid", "looks great", "good point", "great point", "bon point",
    "bonne idée", "excellente idée", "great idea", "good idea", "on the same page",
    "valide la proposition", "approuve", "i support", "fully support", "je confirme",
)
NOT_AGREE = CueSet("pas d'accord", "disagree", "don't agree", "do not agree", "pas du tout")
LEAD = CueSet(
    "je propose", "proposons", "je suggère", "let's", "let us", "i propose", "i suggest",
    "prochaines étapes", "prochaine étape", "next steps", "next step", "plan d'action",
    "action items", "action plan", "je déclare", "lançons", "commençons", "nous devons",
    "we need to", "we should", "il faut que", "voici le plan", "ordre du jour", "agenda",
    "owner", "responsable", "assigné", "assignée", "assigned", "répartition",
    "je coordonne", "coordination", "i'll coordinate", "to-do", "kick-off", "deadline",
    "veuillez", "merci de", "please", "pouvez-vous", "peux-tu", "can you", "could you",
    "officiellement", "officially", "go pour", "we're go", "décision", "decision",
)
ASSIGN = CueSet(
    "tu prends", "tu t'occupes", "vous prenez", "vous vous occupez", "prend en charge",
    "prendra", "s'occupe", "s'occupera", "se charge", "se chargera", "tu prépares",
    "tu peux", "pouvez-vous", "peux-tu", "merci de", "à toi", "will handle", "will take",
    "takes", "owns", "can you", "could you", "please", "owner", "responsable", "→", "->",
)
META = CueSet(
    "cette conversation", "la conversation", "cette discussion", "la discussion",
    "notre discussion", "ce fil", "thread", "fin de la conversation", "fin de la discussion",
    "clôtur", "récapitul", "synthèse", "pour résumer", "en résumé", "résumé des",
    "mon rôle", "ton rôle", "votre rôle", "les rôles", "en tant qu'agent",
    "en tant que modèle", "intelligence artificielle", "modèle de langage", "tokens",
    "tour de parole", "vos contributions", "vos retours", "tous les agents",
    "chaque agent", "les agents", "tout le monde est d'accord", "nous sommes alignés",
    "tous alignés", "this conversation", "the conversation", "this discussion",
    "the discussion", "recap", "to summarize", "to sum up", "in summary", "wrap up",
    "wrapping up", "my role", "your role", "as an ai", "language model", "all agents",
    "each agent", "everyone is aligned", "we're all aligned", "we are all aligned",
    "fully aligned", "your contributions", "everyone's input",
)
ARCH = CueSet(
    "api", "backend", "back-end", "frontend", "front-end", "base de données", "database",
    "serveur", "server", "cloud", "aws", "gcp", "azure", "firebase", "flutter", "react",
    "native", "stripe", "mapbox", "postgres", "postgresql", "sql", "nosql", "mvp",
    "architecture", "stack", "budget", "coût", "coûts", "cost", "costs", "€", "k€", "euros",
    "semaines", "weeks", "sprint", "planning", "roadmap", "délai", "jalons", "milestone",
    "fonctionnalité", "fonctionnalités", "feature", "features", "paiement", "payment",
    "sécurité", "security", "rgpd", "gdpr", "tests", "testing", "déploiement", "deploy",
    "deployment", "ci/cd", "ux", "ui", "maquette", "maquettes", "wireframe", "notification",
    "notifications", "géolocalisation", "geolocation", "livreur", "livreurs", "courier",
    "restaurant", "restaurants", "commission", "marketing", "scène", "stage", "billetterie",
    "ticketing", "artistes", "artists", "logistique", "logistics", "sponsor", "sponsors",
    "risque", "risques", "risk", "risks", "kpi", "scope", "périmètre", "devis", "quote",
    "estimation", "estimate", "j/h", "heures", "hours", "ios", "android", "app",
    "application", "module", "microservices", "docker", "kubernetes", "hébergement",
    "hosting", "authentification", "authentication", "dashboard", "tableau de bord",
)
FAILURE = CueSet(
    "erreur", "error", "crash", "crashed", "planté", "en panne", "down", "décommissionné",
    "décommissionnée", "decommissioned", "deprecated", "indisponible", "unavailable",
    "absent", "absente", "absence", "hors ligne", "offline", "ne répond plus", "ne répond pas",
    "silencieux", "silent", "no longer supported", "plus supporté", "n'est plus",
    "left the", "a quitté", "quitté", "departed", "missing", "manquant", "⚠", "overloaded",
    "surchargé", "rate limit", "not responding", "hasn't responded", "n'a pas répondu",
    "sans lui", "sans elle", "without him", "without her", "without them", "en son absence",
    "in his absence", "in her absence", "in their absence",
)
TAKEOVER = CueSet(
    "je prends en charge", "je m'en charge", "je m'en occupe", "je reprends", "je couvre",
    "je vais couvrir", "je vais reprendre", "je m'occupe de sa", "je m'occupe de son",
    "je prendrai", "i'll cover", "i will cover", "i'll take over", "i will take over",
    "i'll handle", "i will handle", "i'll pick up", "i can cover", "i'll step in",
    "je le remplace", "je la remplace", "à sa place", "in his place", "in their place",
)
REDISTRIBUTE = CueSet(
    "prendra", "reprendra", "se chargera", "reprend", "redistribu", "répartir",
    "répartissons", "réaffect", "réassign", "reassign", "redistribute", "let's split",
    "split the", "will take over", "takes over", "will pick up", "will cover",
    "partageons", "se partager",
)


def lexicon_verdict(target: MessageView, context: Sequence[MessageView], codebook: Codebook,
                    *, peers: Sequence[str]) -> Verdict:
    """Code ``target`` by rule (see the module docstring). ``context``: the messages before
    it, in transcript order (error lines and departure notices are what ``comp`` needs);
    ``peers``: the run's display names."""
    raw = _THINK.sub(" ", target.text)
    text = _prepare(raw)
    named = named_peers(raw, target.speaker, peers)
    computed: dict[str, bool] = {
        "phatic": _phatic(text),
        "agree": _agree(text),
        "lead": _lead(raw, text, target.speaker, peers),
        "meta": _hits(META, text) >= 1,
        "arch": _arch(text) and (_in_group(context) or bool(named) or "@" in raw),
    }
    comp_level = _comp(raw, text, target, context, named, peers)
    computed["comp"] = comp_level is not None
    values: dict[str, bool | None] = {}
    levels: dict[str, str | None] = {}
    for flag in codebook.flags:
        values[flag.name] = computed.get(flag.name)
        if flag.levels:
            level = comp_level if flag.name == "comp" else None
            levels[flag.name] = level if level in flag.level_names else None
    return Verdict(values=values, levels=levels, rationale=f"lexicon v{LEXICON_VERSION}")


def _lower(text: str) -> str:
    return normalise(text).replace("’", "'").replace("‘", "'").lower()


def _prepare(text: str) -> str:
    return _SELF_LABEL.sub("", _lower(text).strip(), count=1)


def _pieces(raw: str, pattern: str) -> list[tuple[str, str]]:
    """``raw`` split by ``pattern``: each piece as written (for names, whose case matters)
    and lower-cased (for cues)."""
    return [(piece, _lower(piece)) for piece in re.split(pattern, normalise(raw))]


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _phatic(text: str) -> bool:
    words = _words(text)
    if not words:
        return False
    if len(words) <= 25 and _hits(PHATIC, text) >= 1 and not _FIGURE.search(text) \
            and _hits(ARCH, text) == 0:
        return True
    lines = [ln for ln in text.splitlines() if _words(ln)]
    closing = [ln for ln in lines if _hits(CLOSING, ln)]
    return len(lines) >= 3 and len(closing) >= 0.6 * len(lines) and _hits(ARCH, text) <= 1


def _agree(text: str) -> bool:
    return _hits(AGREE, text) >= 1 and _hits(NOT_AGREE, text) == 0


def _lead(raw: str, text: str, speaker: str | None, peers: Sequence[str]) -> bool:
    for line, low in _pieces(raw, r"\n"):
        if _hits(ASSIGN, low) and named_peers(line, speaker, peers):
            return True
    return _hits(LEAD, text) >= 3


def _arch(text: str) -> bool:
    terms = _hits(ARCH, text)
    return terms >= 6 or (terms >= 4 and bool(_FIGURE.search(text)))


def _in_group(context: Sequence[MessageView]) -> bool:
    """Whether another agent's message was shown before this one (not a solo answer)."""
    return any(m.kind == MessageKind.AGENT for m in context)


def _comp(raw: str, text: str, target: MessageView, context: Sequence[MessageView],
          named: Sequence[str], peers: Sequence[str]) -> str | None:
    ids = {i.lower() for m in context if m.kind == MessageKind.ERROR
           for i in [*_TICKED.findall(m.text), *_MODEL_ID.findall(m.text.lower())]}
    failure = _hits(FAILURE, text) >= 1
    echoes_error = any(i in text for i in ids)
    near_peer = failure and any(_hits(FAILURE, low) and
                                named_peers(sentence, target.speaker, peers)
                                for sentence, low in _pieces(raw, r"(?<=[.!?\n])"))
    if not (echoes_error or near_peer):
        return None
    if _hits(REDISTRIBUTE, text) and len(named) >= 2:
        return "L3"
    if _hits(TAKEOVER, text):
        return "L2"
    if _hits(REDISTRIBUTE, text):
        return "L3"
    return "L1"
