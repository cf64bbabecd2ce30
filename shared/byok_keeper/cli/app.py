"""What every command shares: the ``App`` (settings from flags, environment and config, and the
output format), the ``--output`` option, and dependencies built through ``runtime``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import click

from ..kms import Allowlist
from ..runtime import Deps, build_deps
from ..settings import Settings, load_settings

EXIT_PENDING = 3  # plan: work is pending


@dataclass
class App:
    flags: dict[str, Any] = field(default_factory=dict)
    config: str | None = None
    debug: bool = False
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.flags, config_path=self.config)
        return self._settings

    def deps(self, allowlist: Allowlist, *, with_vault: bool = True) -> Deps:
        return build_deps(self.settings, allowlist, with_vault=with_vault)

    def emit(self, payload: dict[str, Any], human: str) -> None:
        if self.settings.output == "json":
            click.echo(json.dumps(payload, indent=2, sort_keys=True))
        else:
            click.echo(human)

    def progress(self, message: str) -> None:
        click.echo(message, err=True)


def output_option(f):
    def callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(App).flags["output"] = value

    return click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        expose_value=False,
        callback=callback,
        help="Output format (also BYOK_OUTPUT). json prints one JSON object on stdout.",
    )(f)
