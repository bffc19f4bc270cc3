"""Protocol files: TOML -> validated, frozen models -> one :class:`RunSpec` per run.

A protocol describes one *series*. Its ``[matrix]`` table lists dotted field paths and the
values each may take; the series is the full factorial product of those values (each
*cell* differs from its neighbours in one factor only), times ``replicates``.

Errors name the file, the field and what was expected, on one line.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from roundtable import conditions, tomlfile
from roundtable._strict import Bool, Float, Int
from roundtable.errors import ProtocolError

# Endpoint and price models belong to the providers; re-exported for existing imports.
from roundtable.providers.config import EndpointConfig as EndpointConfig
from roundtable.providers.config import Price as Price
from roundtable.providers.generate import GenerateConfig

#: Upper bounds that catch a typo (an extra zero) before anything is expanded or stored.
MAX_ROUNDS = 1000
MAX_REPLICATES = 10_000
MAX_SEATS = 64
MAX_RUNS = 100_000
PEER_FORMAT_FIELDS = ("name", "text")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: the endpoint recorded for a human seat (it has no model and is never called)
HUMAN_ENDPOINT = "human"


class SeatConfig(_Frozen):
    """One seat: ``model`` is ``endpoint:model-id``; ``label`` is the human-readable true
    identity (defaults to the model id). ``human = "Name"`` instead of ``model`` makes the
    seat a person's (see :class:`HumanConfig`): it keeps that name whatever the naming
    scheme, and is stored with endpoint ``human``, model = the name and label ``human``."""

    model: str | None = None
    human: str | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _has_endpoint(self) -> SeatConfig:
        if self.human is not None:
            if self.model is not None:
                raise ValueError("a seat is either a model ('model') or a person ('human'), "
                                 "not both")
            if not self.human.strip() or self.human != self.human.strip():
                raise ValueError(f"human seat name must be a non-empty name without "
                                 f"surrounding spaces, got {self.human!r}")
            return self
        if self.model is None:
            raise ValueError("a seat needs 'model' (e.g. 'groq:llama-3.3-70b') or 'human' "
                             "(e.g. { human = \"Moderator\" })")
        endpoint, sep, model_id = self.model.partition(":")
        if not sep or not endpoint or not model_id:
            raise ValueError(
                f"seat model must look like 'endpoint:model-id' (e.g. 'groq:llama-3.3-70b'),"
                f" got '{self.model}'"
            )
        return self

    @property
    def is_human(self) -> bool:
        """Whether a person takes this seat."""
        return self.human is not None

    @property
    def endpoint(self) -> str:
        """The endpoint name (``human`` for a person's seat)."""
        if self.human is not None:
            return HUMAN_ENDPOINT
        return (self.model or "").partition(":")[0]

    @property
    def model_id(self) -> str:
        """The model id (the person's name for a human seat)."""
        if self.human is not None:
            return self.human
        return (self.model or "").partition(":")[2]


class CloneConfig(_Frozen):
    """``n`` copies of one model (homogeneous group)."""

    model: str
    n: Int = Field(ge=1, le=MAX_SEATS)
    label: str | None = None


class RosterConfig(_Frozen):
    """Either an explicit list of seats or a clone group."""

    seats: tuple[SeatConfig, ...] = ()
    clone: CloneConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _strings_to_seats(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("seats"), list):
            data = dict(data)
            data["seats"] = [{"model": s} if isinstance(s, str) else s for s in data["seats"]]
        return data

    @model_validator(mode="after")
    def _one_of(self) -> RosterConfig:
        if self.seats and self.clone:
            raise ValueError("give either 'seats' (a list) or 'clone' (a table), not both")
        if not self.seats and not self.clone:
            raise ValueError("the roster needs at least one seat (seats = [...]) or a clone "
                             "table ([roster.clone])")
        if len(self.seats) > MAX_SEATS:
            raise ValueError(f"{len(self.seats)} seats is more than the maximum of "
                             f"{MAX_SEATS}")
        return self

    def resolved(self) -> tuple[SeatConfig, ...]:
        """The seats in roster order, clones expanded."""
        if self.clone is not None:
            seat = SeatConfig(model=self.clone.model, label=self.clone.label)
            return tuple(seat for _ in range(self.clone.n))
        return self.seats


class HumanConfig(_Frozen):
    """How long the run waits for a person's turn (``timeout_s``, counted from when the
    turn became pending, across restarts) and what happens then: ``skip`` stores a
    ``human_skipped`` event and goes on; ``wait`` keeps waiting."""

    timeout_s: float = Field(default=900.0, gt=0)
    on_timeout: Literal["skip", "wait"] = "skip"


class NamingConfig(_Frozen):
    scheme: conditions.NamingScheme = "letters"
    names: tuple[str, ...] = ()
    prefix: str = "Agent-"


class PromptConfig(_Frozen):
    """System prompt scaffold and the brief (the opening user message)."""

    brief: str = Field(min_length=1)
    scaffold: conditions.Scaffold = "full"
    template: str | None = None
    language: str = "en"

    @field_validator("template")
    @classmethod
    def _known_placeholders(cls, template: str | None) -> str | None:
        if template is not None:
            conditions.check_placeholders(template, conditions.TEMPLATE_FIELDS)
        return template

    @model_validator(mode="after")
    def _custom_needs_template(self) -> PromptConfig:
        if self.scaffold == "custom" and not self.template:
            raise ValueError("scaffold 'custom' needs a 'template' string")
        if self.template is None and self.language not in conditions.SCAFFOLD_TEMPLATES:
            known = ", ".join(sorted(conditions.SCAFFOLD_TEMPLATES))
            raise ValueError(
                f"language {self.language!r} has no built-in scaffold texts: use one of "
                f"{known}, or give your own 'template'"
            )
        return self


class TurnConfig(_Frozen):
    """``simultaneous``: every seat in round r sees exactly rounds < r (deterministic).
    ``sequential``: seats speak one after another and see earlier speakers of the same round.
    ``staggered``: seat k starts ``k * stagger_ms`` after the round starts and sees whatever
    has arrived by then (emulates the reference tool; recorded as non-deterministic)."""

    scheme: Literal["simultaneous", "sequential", "staggered"] = "simultaneous"
    order: conditions.OrderMode = "fixed"
    stagger_ms: Int = Field(default=1200, ge=0, le=600_000)
    peer_format: str = "[{name}]: {text}"

    @field_validator("peer_format")
    @classmethod
    def _known_placeholders(cls, peer_format: str) -> str:
        conditions.check_placeholders(peer_format, PEER_FORMAT_FIELDS)
        return peer_format


class SamplingConfig(GenerateConfig):
    """A protocol's ``[sampling]`` table: the :class:`~roundtable.providers.generate.
    GenerateConfig` of every seat, with a temperature of 0.8 unless it says otherwise."""

    temperature: Float | None = Field(default=0.8, ge=0, le=2)

    def seat_seed(self, run_seed: int, round_index: int, position: int) -> int | None:
        """The seed of one seat's call in one round: derived from :attr:`seed`, the run's
        seed, the round and the roster position (``None`` when :attr:`seed` is unset)."""
        if self.seed is None:
            return None
        return conditions.derive_seed(self.seed, run_seed, round_index, position)


class FaultConfig(_Frozen):
    """Crash ``seat`` (1-based roster position or display name) from ``round`` on.

    ``error``: the error text is shown to peers once, then the seat is gone;
    ``silent``: the seat vanishes without a trace in the transcript;
    ``departure``: a system notice says the seat left.
    """

    seat: Int | str
    round: Int = Field(default=0, ge=0)
    mode: Literal["error", "silent", "departure"] = "error"
    message: str | None = None


class FailurePolicy(_Frozen):
    """What to do when a seat's call still fails after the client's retries.

    ``skip_turn``: record it and try the seat again next round, dropping it after
    ``max_consecutive`` failures in a row; ``drop_seat``: drop it at once;
    ``abort_run``: mark the run failed. ``show_errors`` shows the error text to peers
    (as the reference tool did)."""

    on_failure: Literal["skip_turn", "drop_seat", "abort_run"] = "skip_turn"
    max_consecutive: Int = Field(default=3, ge=1)
    show_errors: Bool = False


class Protocol(_Frozen):
    """A validated protocol file (one series)."""

    series: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    rounds: Int = Field(ge=1, le=MAX_ROUNDS)
    replicates: Int = Field(default=1, ge=1, le=MAX_REPLICATES)
    seed: Int = 0
    roster: RosterConfig
    naming: NamingConfig = NamingConfig()
    prompt: PromptConfig
    turns: TurnConfig = TurnConfig()
    sampling: SamplingConfig = SamplingConfig()
    faults: tuple[FaultConfig, ...] = ()
    failures: FailurePolicy = FailurePolicy()
    human: HumanConfig = HumanConfig()
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    matrix: dict[str, tuple[Any, ...]] = Field(default_factory=dict)
    reference: dict[str, str] = Field(default_factory=dict)

    @field_validator("endpoints", mode="before")
    @classmethod
    def _complete_builtins(cls, value: Any) -> Any:
        from roundtable.settings import complete_builtin_tables

        return complete_builtin_tables(value)

    @model_validator(mode="after")
    def _check_cell(self) -> Protocol:
        seats = self.roster.resolved()
        for key, values in self.matrix.items():
            if not values:
                raise ValueError(f"matrix '{key}' lists no values")
        _check_run_count(self)
        if not self.matrix:
            _check_names(self, sum(not s.is_human for s in seats))
            _resolve_faults(self, _names_for(self, seats))
        return self


class SeatSpec(_Frozen):
    """One seat of one run, fully resolved."""

    position: int  # 0-based roster position
    endpoint: str
    model: str
    label: str  # true identity as recorded
    display_name: str  # what peers see
    system_prompt: str


class FaultSpec(_Frozen):
    position: int
    round: int
    mode: Literal["error", "silent", "departure"]
    message: str


class RunSpec(_Frozen):
    """Everything needed to hold one run; hashing it identifies the run for resume."""

    series: str
    cell: str  # condition cell label, e.g. "naming.scheme=model" or "base"
    conditions: dict[str, Any]
    replicate: int  # 1-based
    seed: int
    rounds: int
    brief: str
    seats: tuple[SeatSpec, ...]
    isolation: bool
    turns: TurnConfig
    sampling: SamplingConfig
    faults: tuple[FaultSpec, ...]
    failures: FailurePolicy
    #: set only when a seat is human (so runs without one keep their stored digest)
    human: HumanConfig | None = None

    @property
    def key(self) -> str:
        """Unique within a series: cell and replicate."""
        return f"{self.cell}#{self.replicate}"

    @property
    def deterministic(self) -> bool:
        return self.turns.scheme != "staggered"

    @property
    def has_human(self) -> bool:
        """Whether a person takes a seat of this run."""
        return any(s.endpoint == HUMAN_ENDPOINT for s in self.seats)

    def digest(self) -> str:
        """Identifies the run's specification (unchanged for runs without a human seat)."""
        exclude = {"human"} if self.human is None else None
        return hashlib.sha256(self.model_dump_json(exclude=exclude).encode()).hexdigest()


def _check_run_count(protocol: Protocol) -> None:
    """Refuse a series of more than :data:`MAX_RUNS` runs before anything is expanded."""
    replicates = [protocol.replicates]
    total = 1
    for key, values in protocol.matrix.items():
        total *= len(values)
        if key == "replicates":  # each cell has its own count: the largest bounds the total
            replicates = [v for v in values if isinstance(v, int)] or replicates
    total *= max(replicates)
    if total > MAX_RUNS:
        raise ValueError(
            f"the series would have more than {MAX_RUNS:,} runs (cells x replicates); "
            f"lower 'replicates' or the number of matrix values"
        )


def _names_for(protocol: Protocol, seats: Sequence[SeatConfig]) -> list[str]:
    """Display names in roster order: a human seat keeps its own name; the model seats are
    named by the naming scheme as if the human seats were not there."""
    models = [s for s in seats if not s.is_human]
    try:
        scheme_names = conditions.display_names(
            protocol.naming.scheme,
            len(models),
            model_labels=[s.label or s.model_id for s in models],
            explicit=protocol.naming.names,
            prefix=protocol.naming.prefix,
        ) if models else []
    except ValueError as exc:
        raise ValueError(f"naming: {exc}") from None
    it = iter(scheme_names)
    names = [s.human if s.human is not None else next(it) for s in seats]
    for i, seat in enumerate(seats):
        if seat.is_human and names.count(names[i]) > 1:
            raise ValueError(f"roster: human seat '{seat.human}' has the same name as another "
                             f"seat; give it a name of its own")
    return names


def _check_names(protocol: Protocol, n: int) -> None:
    if protocol.naming.scheme == "explicit" and len(protocol.naming.names) != n:
        raise ValueError(
            f"naming.names must list {n} names (one per model seat; human seats keep their "
            f"own), got {len(protocol.naming.names)}"
        )


def _resolve_faults(protocol: Protocol, names: Sequence[str]) -> tuple[FaultSpec, ...]:
    out = []
    for fault in protocol.faults:
        if isinstance(fault.seat, int):
            if not 1 <= fault.seat <= len(names):
                raise ValueError(
                    f"faults: seat {fault.seat} is not a roster position (1..{len(names)})"
                )
            position = fault.seat - 1
        elif fault.seat in names:
            position = names.index(fault.seat)
        else:
            raise ValueError(f"faults: seat '{fault.seat}' is not one of {list(names)}")
        if fault.round >= protocol.rounds:
            raise ValueError(f"faults: round {fault.round} is past the last round")
        message = fault.message or _default_fault_message(fault.mode, names[position])
        out.append(FaultSpec(position=position, round=fault.round, mode=fault.mode,
                             message=message))
    return tuple(out)


def _default_fault_message(mode: str, name: str) -> str:
    if mode == "departure":
        return f"{name} has left the conversation."
    if mode == "error":
        return "⚠ The model is unavailable: the request failed."
    return ""


# --------------------------------------------------------------------------- loading


def load_protocol(path: str | Path) -> Protocol:
    """Read and validate a protocol file; raise :class:`ProtocolError` naming the field."""
    path = Path(path)
    return parse_protocol(tomlfile.read_text(path, "protocol", ProtocolError),
                          source=str(path))


def parse_protocol(text: str, *, source: str = "<protocol>") -> Protocol:
    """Validate protocol TOML text. ``source`` names the file in error messages."""
    return _validate(tomlfile.parse(text, source, ProtocolError), source)


def _validate(data: Mapping[str, Any], source: str) -> Protocol:
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(format_validation_error(exc, source)) from None


_UNION_TAGS = {"int": "a whole number", "str": "a string", "float": "a number",
               "bool": "true or false"}


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: file, dotted field path, what was expected and what was found."""
    errors = exc.errors()
    first = errors[0]
    parts = [str(p) for p in first["loc"] if not str(p).startswith("function-")]
    got = first.get("input")
    # A union (``seat: int | str``) reports one error per member, tagged with its type.
    members = [str(e["loc"][-1]) for e in errors if first["loc"] and e["loc"]
               and e["loc"][:-1] == first["loc"][:-1] and str(e["loc"][-1]) in _UNION_TAGS]
    if len(members) > 1 and parts and parts[-1] in _UNION_TAGS:
        parts = parts[:-1]
        errors = errors[len(members) - 1:]
    loc = ".".join(parts)
    msg = first["msg"].removeprefix("Value error, ")
    where = f"field '{loc}'" if loc else "top level"
    line = f"{source}: {where}: {msg}"
    if len(members) > 1:
        line = (f"{source}: {where}: expected "
                f"{' or '.join(_UNION_TAGS[m] for m in members)}, got "
                f"{str(got).lower() if isinstance(got, bool) else repr(got)}")
    elif isinstance(got, bool) and first["type"] in ("int_type", "float_type"):
        number = "a whole number" if first["type"] == "int_type" else "a number"
        line = f"{source}: {where}: expected {number}, not {str(got).lower()}"
    elif first["type"] == "extra_forbidden":
        allowed = _allowed_fields(first["loc"][:-1])
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        line = f"{source}: {where}: unknown field (check the spelling{hint})"
    elif first["type"] == "missing":
        line = f"{source}: {where}: required field is missing"
    elif got is not None and not isinstance(got, dict | list) and first["type"] != "value_error":
        line += f" (got {got!r})"
    if len(errors) > 1:
        line += f" [and {len(errors) - 1} more problem(s)]"
    return line


def _allowed_fields(loc: Sequence[int | str]) -> list[str]:
    """Field names of the model found by walking ``loc`` from :class:`Protocol`."""
    model: type[BaseModel] = Protocol
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        inner = _model_in(field.annotation)
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def protocol_hash(text: str) -> str:
    """Hash of the protocol's meaning (parsed TOML), not its formatting."""
    data = tomllib.loads(text.removeprefix("\ufeff"))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- expansion


def cells(protocol: Protocol) -> list[tuple[str, dict[str, Any], Protocol]]:
    """The factorial cells: ``(label, {path: value}, protocol with the values applied)``."""
    if not protocol.matrix:
        return [("base", {}, protocol)]
    base = protocol.model_dump(mode="python", exclude={"matrix"}, exclude_defaults=False)
    keys = list(protocol.matrix)
    out = []
    for combo in itertools.product(*(protocol.matrix[k] for k in keys)):
        data = copy.deepcopy(base)
        labels: dict[str, Any] = {}
        for key, value in zip(keys, combo, strict=True):
            _set_path(data, key, value)
            labels[key] = _value_label(value)
        label = ",".join(f"{k}={v}" for k, v in labels.items())
        try:
            cell = Protocol.model_validate(data)
        except ValidationError as exc:
            raise ProtocolError(format_validation_error(exc, f"matrix cell [{label}]")) from None
        out.append((label, labels, cell))
    return out


def _value_label(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("label", json.dumps(value, sort_keys=True))
    if isinstance(value, list):
        return json.dumps(value)
    return value


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node: Any = data
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise ProtocolError(f"matrix: '{dotted}' does not name a protocol field")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        raise ProtocolError(f"matrix: '{dotted}' does not name a protocol field")
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "label"} if parts[-1] != "roster" \
            else {k: v for k, v in value.items() if k != "label"}
    node[parts[-1]] = value


def expand(protocol: Protocol) -> list[RunSpec]:
    """All runs of the series, in a stable order (cell, then replicate)."""
    runs = []
    for label, labels, cell in cells(protocol):
        seats_cfg = cell.roster.resolved()
        names = _names_for(cell, seats_cfg)
        faults = _resolve_faults(cell, names)
        isolation = cell.prompt.scaffold == "isolation"
        seats = []
        for i, seat in enumerate(seats_cfg):
            peers = [n for j, n in enumerate(names) if j != i]
            prompt = conditions.system_prompt(
                cell.prompt.scaffold, names[i], peers,
                language=cell.prompt.language, template=cell.prompt.template,
            )
            seats.append(SeatSpec(
                position=i, endpoint=seat.endpoint, model=seat.model_id,
                label=HUMAN_ENDPOINT if seat.is_human else seat.label or seat.model_id,
                display_name=names[i], system_prompt=prompt,
            ))
        human = cell.human if any(s.is_human for s in seats_cfg) else None
        for replicate in range(1, cell.replicates + 1):
            runs.append(RunSpec(
                series=cell.series, cell=label, conditions=labels, replicate=replicate,
                seed=conditions.derive_seed(cell.seed, label, replicate),
                rounds=cell.rounds, brief=cell.prompt.brief, seats=tuple(seats),
                isolation=isolation, turns=cell.turns, sampling=cell.sampling,
                faults=faults, failures=cell.failures, human=human,
            ))
    return runs
