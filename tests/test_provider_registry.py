"""The provider registry: built-in kinds resolve from a table (no SDK import, no entry-point
scan); any other kind comes from a ``roundtable.providers`` entry point, found the way an
installed package's would be (a ``*.dist-info`` folder on ``sys.path``); unknown kinds and
broken plugins give one line naming the file, the field, the known kinds and the fix."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.errors import ConfigError, ProtocolError
from roundtable.protocol import EndpointConfig, parse_protocol
from roundtable.providers import registry
from roundtable.providers.base import ChatMessage, CompletionRequest
from roundtable.providers.options import OPTION_MODELS, known_options, validate_options
from tests.fakes import echo_provider

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

ECHO_PROTOCOL = """\
series = "echoes"
rounds = 2
[roster]
seats = ["box:alpha", "box:beta"]
[prompt]
brief = "@all Plan a picnic."
[endpoints.box]
kind = "echo"
max_concurrency = 4
options = {{ {options} }}
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on ``sys.path`` for fake installed packages; the registry forgets its scan
    before and after, so a test sees exactly the packages it installed."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    registry.refresh()
    yield folder
    registry.refresh()


@pytest.fixture
def echo(site: Path) -> Path:
    """The echo provider installed (registered through its entry point)."""
    echo_provider.install(site)
    return site


def _fresh_python(code: str, *, site: Path | None = None) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*([str(site)] if site else []), str(REPO),
                                         env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env)
    return done.stdout


# --------------------------------------------------------------------------- built-in kinds


def test_builtin_kinds_need_no_sdk_and_no_entry_point_scan() -> None:
    """Parsing a protocol with every built-in kind and checking their options imports no
    SDK and never reads the installed packages' entry points."""
    out = _fresh_python(
        "import importlib.metadata as md, sys\n"
        "real = md.entry_points\n"
        "def refuse(**k):\n"  # pydantic scans its own group; ours must not be read
        "    if k.get('group') == 'roundtable.providers':\n"
        "        raise SystemExit('entry points were scanned')\n"
        "    return real(**k)\n"
        "md.entry_points = refuse\n"
        "from roundtable import settings\n"
        "from roundtable.protocol import parse_protocol\n"
        "from roundtable.providers.options import validate_options\n"
        "kinds = ['openai', 'anthropic', 'google', 'local', 'scripted']\n"
        "text = 'series = \"s\"\\nrounds = 1\\n[roster]\\nseats = [\"e0:m\"]\\n'"
        " '[prompt]\\nbrief = \"b\"\\n' + ''.join("
        "f'[endpoints.e{i}]\\nkind = \"{k}\"\\n' for i, k in enumerate(kinds))\n"
        "p = parse_protocol(text)\n"
        "for name, cfg in settings.endpoints(p.endpoints).items():\n"
        "    validate_options(cfg.kind, cfg.options, where=name)\n"
        "print(sorted(m for m in ('openai', 'anthropic', 'google', 'llama_cpp')"
        " if m in sys.modules))\n")
    assert out.strip() == "[]"


def test_builtin_classes_declare_their_kind_and_options_model() -> None:
    for kind in registry.builtin_kinds():
        cls = registry.provider_class(kind)
        assert cls.kind == kind
        assert cls.options_model is OPTION_MODELS[kind] is registry.options_model(kind)
    assert set(registry.builtin_kinds()) == set(OPTION_MODELS)


def test_every_kind_shares_the_batch_and_replica_options() -> None:
    for kind in registry.builtin_kinds():
        assert {"batch", "batch_discount", "replica_cooldown_s"} <= set(known_options(kind))
    validate_options("openai", {"replica_cooldown_s": 5}, where="x")
    with pytest.raises(ConfigError, match=r"x: options.replica_cooldown_s: .*>= 0|greater"):
        validate_options("openai", {"replica_cooldown_s": -1}, where="x")


def test_unknown_kind_names_file_field_known_kinds_and_fix(site: Path) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(ECHO_PROTOCOL.format(options=""), source="p.toml")
    line = str(info.value)
    assert "\n" not in line
    for fragment in ("p.toml", "field 'endpoints.box.kind'", "unknown provider kind 'echo'",
                     "anthropic, google, local, openai, scripted", "roundtable.providers",
                     "install the package"):
        assert fragment in line, (fragment, line)


def test_unknown_kind_through_the_cli_is_one_line(tmp_path: Path, site: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(ECHO_PROTOCOL.format(options="").replace(
        'kind = "echo"', 'kind = "ecko"'), encoding="utf-8")
    result = runner.invoke(app, ["run", "p.toml", "--db", str(tmp_path / "rt.db")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "p.toml" in lines[0] and "endpoints.box.kind" in lines[0]
    assert "'ecko'" in lines[0] and "openai" in lines[0]
    assert not (tmp_path / "rt.db").exists()


def test_unknown_kind_in_a_judge_file_is_one_line(tmp_path: Path, site: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "codebook.toml").write_bytes((REPO / "judges" / "codebook.toml").read_bytes())
    (tmp_path / "j.toml").write_text(
        'name = "j"\nkind = "llm"\nendpoint = "box"\nmodel = "m"\n'
        'codebook = "codebook.toml"\n[endpoints.box]\nkind = "ecko"\n', encoding="utf-8")
    result = runner.invoke(app, ["judge", "--judge", "j.toml", "--db", str(tmp_path / "rt.db")])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert line.startswith("error: j.toml: field 'endpoints.box.kind': unknown provider kind "
                           "'ecko': use one of anthropic, google"), line


# --------------------------------------------------------------------------- entry points


def test_a_registered_kind_is_accepted_and_built(echo: Path) -> None:
    assert "echo" in registry.known_kinds()
    cfg = EndpointConfig(kind="echo", options={"prefix": "heard", "repeat": 2})
    provider = registry.build_provider("box", cfg, environ={})
    assert isinstance(provider, echo_provider.EchoProvider)
    request = CompletionRequest(model="m", messages=(ChatMessage("user", "hello"),))
    done = asyncio.run(provider.complete(request))
    assert done.text == "heard m: hello hello"


def test_a_registered_kind_checks_options_with_its_model(echo: Path) -> None:
    validate_options("echo", {"shout": True, "batch": False}, where="p.toml: endpoint 'box'")
    assert known_options("echo") == sorted(echo_provider.EchoOptions.model_fields)
    with pytest.raises(ConfigError) as info:
        validate_options("echo", {"shoot": True}, where="p.toml: endpoint 'box'")
    assert str(info.value) == ("p.toml: endpoint 'box': unknown option 'shoot' for a echo "
                               f"endpoint; known options: {', '.join(known_options('echo'))}")
    with pytest.raises(ConfigError, match=r"options.shout: expected a number|options.shout"):
        validate_options("echo", {"shout": 1}, where="x")
    with pytest.raises(ConfigError, match=r"x: options.repeat: .*less than or equal to 10"):
        validate_options("echo", {"repeat": 11}, where="x")


def test_entry_points_are_scanned_once_then_on_refresh(site: Path) -> None:
    with pytest.raises(ValueError, match="unknown provider kind 'echo'"):
        registry.check_kind("echo")
    echo_provider.install(site)
    with pytest.raises(ValueError):  # the first scan is kept
        registry.check_kind("echo")
    registry.refresh()
    registry.check_kind("echo")


def test_a_builtin_kind_cannot_be_taken_over(site: Path) -> None:
    echo_provider.install(site, entry_points="openai = tests.fakes.echo_provider:EchoProvider")
    assert registry.provider_class("openai").__name__ == "OpenAIProvider"
    assert registry.known_kinds().count("openai") == 1


@pytest.mark.parametrize(("entry", "expect"), [
    ("echo = tests.fakes.no_such_module:EchoProvider",
     "cannot be loaded: ModuleNotFoundError"),
    ("echo = tests.fakes.echo_provider:EchoOptions", "is not a roundtable.providers.base"),
    ("echo = tests.fakes.echo_provider:install", "is not a roundtable.providers.base"),
])
def test_a_broken_plugin_is_one_config_error(site: Path, entry: str, expect: str) -> None:
    echo_provider.install(site, entry_points=entry)
    with pytest.raises(ConfigError) as info:
        registry.build_provider("box", EndpointConfig(kind="echo"), environ={})
    message = str(info.value)
    assert message.startswith("endpoint 'box': provider kind 'echo'")
    assert expect in message and "package roundtable-echo" in message


def test_a_broken_plugin_stops_the_run_before_anything_is_stored(
        tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    echo_provider.install(site, entry_points="echo = tests.fakes.no_such_module:Echo")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(ECHO_PROTOCOL.format(options=""), encoding="utf-8")
    result = runner.invoke(app, ["run", "p.toml", "--db", str(tmp_path / "rt.db")])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert line.startswith("error: p.toml: endpoint 'box': provider kind 'echo' (entry point "
                           "'tests.fakes.no_such_module:Echo' of package roundtable-echo) "
                           "cannot be loaded: ModuleNotFoundError"), line
    assert "reinstall or fix that package" in line
    assert not (tmp_path / "rt.db").exists()


def test_a_plugin_whose_class_names_another_kind_is_refused(site: Path) -> None:
    echo_provider.install(site, entry_points="parrot = tests.fakes.echo_provider:EchoProvider")
    with pytest.raises(ConfigError, match="declares kind = 'echo'; the entry point's name"):
        registry.provider_class("parrot")


def test_a_plugin_whose_options_allow_anything_is_refused(site: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from pydantic import BaseModel

    class Lax(BaseModel):
        anything: int = 0

    monkeypatch.setattr(echo_provider.EchoProvider, "options_model", Lax)
    echo_provider.install(site)
    with pytest.raises(ConfigError, match="forbids unknown fields"):
        validate_options("echo", {}, where="x")


def test_two_packages_registering_one_kind_are_named(site: Path) -> None:
    echo_provider.install(site)
    echo_provider.install(site, name="other-echo")
    with pytest.raises(ConfigError) as info:
        registry.provider_class("echo")
    assert "roundtable-echo" in str(info.value) and "other-echo" in str(info.value)
    assert "uninstall all but one" in str(info.value)


def test_a_plugin_without_options_model_takes_the_shared_options(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(echo_provider.EchoProvider, "options_model", None)
    echo_provider.install(site)
    validate_options("echo", {"batch": False}, where="x")
    with pytest.raises(ConfigError, match="unknown option 'prefix'"):
        validate_options("echo", {"prefix": "p"}, where="x")


# --------------------------------------------------------------------------- end to end


def test_roundtable_run_uses_a_registered_provider_end_to_end(tmp_path: Path) -> None:
    """A real ``roundtable run`` in a fresh interpreter, the echo package installed only as
    metadata on its path: the series runs, every turn is the echo's, the calls are logged."""
    site = tmp_path / "site"
    echo_provider.install(site)
    (tmp_path / "p.toml").write_text(ECHO_PROTOCOL.format(options='prefix = "heard"'),
                                     encoding="utf-8")
    db = tmp_path / "rt.db"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "roundtable", "run", "p.toml", "--db",
                           str(db), "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1/1 runs completed" in " ".join(done.stdout.split())
    con = sqlite3.connect(db)
    texts = [t for (t,) in con.execute("SELECT text FROM message WHERE kind = 'agent' "
                                       "ORDER BY round, turn")]
    calls = con.execute("SELECT endpoint, count(*) FROM llmcall GROUP BY endpoint").fetchall()
    con.close()
    assert len(texts) == 4  # 2 seats x 2 rounds
    assert all(t.startswith(("heard alpha: ", "heard beta: ")) for t in texts), texts
    assert "Plan a picnic." in texts[0]
    assert calls == [("box", 4)]

    bad = tmp_path / "bad.toml"
    bad.write_text(ECHO_PROTOCOL.format(options="shoot = true"), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "roundtable", "run", "bad.toml", "--db",
                           str(tmp_path / "other.db")], cwd=tmp_path, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 2
    assert "bad.toml: endpoint 'box': unknown option 'shoot' for a echo endpoint" in (
        " ".join(done.stdout.split()) + " ".join(done.stderr.split()))



def test_the_local_adapter_reads_its_options_through_its_model() -> None:
    """No second, hand-written check: the adapter parses what the preflight checked, and a
    library user building it directly gets the preflight's message."""
    from roundtable.providers.local import LocalProvider

    built = LocalProvider("box", EndpointConfig(kind="local", options={
        "top_k": 40, "top_p": 1, "n_threads": 2, "models": {"qwen": "/m/qwen.gguf"}}), None)
    assert built.available_models()[-1] == "qwen"
    assert built._sampling == {"top_k": 40, "top_p": 1.0}
    assert built._n_ctx == 8192 and built._n_threads == 2
    with pytest.raises(ConfigError) as info:
        LocalProvider("box", EndpointConfig(kind="local", options={"top_p": True}), None)
    assert str(info.value) == "endpoint 'box': options.top_p: expected a number, not true"
    with pytest.raises(ConfigError, match="endpoint 'box': options.models: .*dictionary"):
        LocalProvider("box", EndpointConfig(kind="local", options={"models": "x"}), None)
