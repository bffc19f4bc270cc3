"""A third-party provider as small as one can be: it says back the last thing it was told.

It lives outside ``roundtable`` and reaches it only through the ``roundtable.providers``
entry point, which tests register by writing a ``*.dist-info/entry_points.txt`` (see
:func:`install`), exactly as ``pip install`` of a package declaring::

    [project.entry-points."roundtable.providers"]
    echo = "tests.fakes.echo_provider:EchoProvider"

would. An endpoint then uses it with ``kind = "echo"``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from roundtable.providers.base import Completion, CompletionRequest, Provider, Usage
from roundtable.providers.config import Bool, EndpointConfig, Int
from roundtable.providers.options import ProviderOptions

ENTRY_POINT = "echo = tests.fakes.echo_provider:EchoProvider"


class EchoOptions(ProviderOptions):
    """``options`` of an echo endpoint."""

    prefix: str = "echo"
    shout: Bool = False
    repeat: Int = Field(default=1, ge=1, le=10)


class EchoProvider(Provider):
    """Replies ``"<prefix> <model>: <last user message>"`` (upper-cased when ``shout``)."""

    kind = "echo"
    options_model = EchoOptions

    def __init__(self, endpoint: str, options: EchoOptions) -> None:
        self.endpoint = endpoint
        self.options = options

    @classmethod
    def from_config(cls, endpoint: str, config: EndpointConfig,
                    api_key: str | None) -> EchoProvider:
        """Parse the options once, with the model the preflight checked them against."""
        del api_key  # an echo needs no key
        return cls(endpoint, EchoOptions.model_validate(config.options))

    async def complete(self, request: CompletionRequest) -> Completion:
        """Say the last user turn back."""
        heard = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        text = f"{self.options.prefix} {request.model}: {' '.join([heard] * self.options.repeat)}"
        if self.options.shout:
            text = text.upper()
        return Completion(text=text, usage=Usage(input_tokens=len(heard.split()),
                                                 output_tokens=len(text.split())),
                          model=request.model, finish_reason="stop")


def install(site: Path, *, entry_points: str = ENTRY_POINT, name: str = "roundtable-echo"
            ) -> Path:
    """Write the metadata an installed ``name`` package would have into the folder ``site``
    (to be put on ``sys.path``): a ``METADATA`` and an ``entry_points.txt`` registering
    ``entry_points`` (lines ``kind = module:Class``) under ``roundtable.providers``."""
    dist = site / f"{name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
                                   encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[roundtable.providers]\n{entry_points}\n",
                                           encoding="utf-8")
    return dist
