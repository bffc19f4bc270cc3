"""Protocol files with a human seat: validation, names, the [human] table, the matrix."""

from __future__ import annotations

import pytest

from roundtable.errors import ProtocolError
from roundtable.protocol import HUMAN_ENDPOINT, expand, parse_protocol
from tests.test_engine_support import protocol_data, to_toml
from tests.test_human_support import ROSTER, human_protocol


def test_a_human_seat_keeps_its_name_and_is_recorded_as_human() -> None:
    protocol, _ = human_protocol(human={})
    (spec,) = expand(protocol)
    assert [s.display_name for s in spec.seats] == ["Agent-A", "Moderator", "Agent-B"]
    seat = spec.seats[1]
    assert (seat.endpoint, seat.model, seat.label) == (HUMAN_ENDPOINT, "Moderator", "human")
    assert "Moderator" in seat.system_prompt and "Agent-A" in seat.system_prompt
    assert spec.has_human and spec.human is not None
    assert (spec.human.timeout_s, spec.human.on_timeout) == (900, "skip")


def test_runs_without_a_human_keep_their_digest() -> None:
    protocol, _ = human_protocol(roster=["scripted:m0", "scripted:m1"])
    (spec,) = expand(protocol)
    assert spec.human is None
    assert '"human"' not in spec.model_dump_json(exclude={"human"})
    assert spec.digest() != expand(human_protocol()[0])[0].digest()


def test_human_config_is_validated() -> None:
    protocol, _ = human_protocol(human={"timeout_s": 5, "on_timeout": "wait"})
    assert expand(protocol)[0].human == protocol.human
    with pytest.raises(ProtocolError, match=r"test.toml: field 'human.on_timeout'"):
        human_protocol(human={"on_timeout": "never"})
    with pytest.raises(ProtocolError, match=r"field 'human.timeout_s'.*greater than 0"):
        human_protocol(human={"timeout_s": 0})
    with pytest.raises(ProtocolError, match=r"field 'human.tiemout'.*unknown field"):
        human_protocol(human={"tiemout": 3})


@pytest.mark.parametrize(("seat", "message"), [
    ({"human": "Mod", "model": "scripted:m9"}, "either a model .* or a person"),
    ({"human": ""}, "non-empty name"),
    ({"human": " Mod"}, "without surrounding spaces"),
    ({"label": "x"}, "needs 'model'"),
])
def test_bad_human_seats_get_one_line(seat: dict[str, str], message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        human_protocol(roster=["scripted:m0", seat])
    assert "\n" not in str(info.value) and "roster.seats" in str(info.value)


def test_a_human_name_may_not_collide_with_a_scheme_name() -> None:
    with pytest.raises(ProtocolError, match="same name as another seat"):
        human_protocol(roster=["scripted:m0", {"human": "Agent-A"}])


def test_explicit_names_name_only_the_model_seats() -> None:
    protocol, _ = human_protocol(naming={"scheme": "explicit", "names": ["Ann", "Bob"]})
    assert [s.display_name for s in expand(protocol)[0].seats] == ["Ann", "Moderator", "Bob"]
    with pytest.raises(ProtocolError, match="one per model seat"):
        human_protocol(naming={"scheme": "explicit", "names": ["Ann", "Bob", "Cy"]})


def test_matrix_cell_with_and_one_without_a_human() -> None:
    data = protocol_data(rounds=2)
    data["matrix"] = {"roster": [{"label": "with-human", "seats": ROSTER},
                                 {"label": "models", "seats": ["scripted:m0", "scripted:m1"]}]}
    specs = expand(parse_protocol(to_toml(data), source="m.toml"))
    by_cell = {s.cell: s for s in specs}
    assert set(by_cell) == {"roster=with-human", "roster=models"}
    assert by_cell["roster=with-human"].has_human
    assert by_cell["roster=with-human"].human is not None
    assert not by_cell["roster=models"].has_human and by_cell["roster=models"].human is None
    data["matrix"]["roster"][0]["seats"] = ["scripted:m0", {"human": "Agent-A"}]
    with pytest.raises(ProtocolError, match=r"matrix cell \[roster=with-human\].*same name"):
        expand(parse_protocol(to_toml(data), source="m.toml"))
