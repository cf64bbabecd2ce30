"""What every command shares: the ``App`` (settings from flags, environment and config, and the
output format), the ``--output`` option, and dependencies built through ``runtime``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import click

from ...core.deps import Deps, build_deps
from ...core.settings import Settings, load_settings
from ...core.targets import Target, load_targets, select
from ...gateway.kms import Allowlist


@dataclass
class App:
    flags: dict[str, Any] = field(default_factory=dict)
    config: str | None = None
    debug: bool = False
    _settings: Settings | None = None
    _targets: tuple[Target, ...] | None = None
    target: str | None = None  # the target a key command acts in (with targets configured)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = load_settings(self.flags, config_path=self.config)
            self._targets = load_targets(self.config)  # bad targets: exit 2 before anything
            self._settings = settings
        return self._settings

    @property
    def targets(self) -> tuple[Target, ...]:
        """The ``[[targets]]`` of the settings file (none: one account and region)."""
        _ = self.settings
        return self._targets or ()

    def deps(self, allowlist: Allowlist, *, with_vault: bool = True) -> Deps:
        return build_deps(self.settings, allowlist, with_vault=with_vault)

    def fleet_targets(self, names: tuple[str, ...]) -> tuple[Target, ...] | None:
        """The targets a fleet command covers (``--target`` narrows), or None without targets:
        then the command runs as it always has, on the global settings."""
        if not self.targets and not names:
            return None
        return select(self.targets, names)

    def key_deps(
        self,
        allowlist: Allowlist,
        key_id: str | None,
        names: tuple[str, ...],
        *,
        with_vault: bool = True,
    ) -> Deps:
        """``Deps`` for a command on one key: the global ones without targets; else the one
        target named, or the one of the candidates holding ``key_id`` (``multi.locate``)."""
        chosen = self.fleet_targets(names)
        if chosen is None:
            return self.deps(allowlist, with_vault=with_vault)
        from ...core.multi import TargetAmbiguous, locate

        if key_id is None and len(chosen) > 1:
            raise TargetAmbiguous(
                f"more than one target is configured: choose with --target "
                f"({', '.join(t.name for t in chosen)})"
            )
        target, deps = locate(self.settings, chosen, key_id or "", allowlist, with_vault=with_vault)
        self.target = target.name  # the outputs name it
        return deps

    def emit(self, payload: dict[str, Any], human: str) -> None:
        if self.target is not None:  # a key command in one of several targets
            payload = {**payload, "target": self.target}
            human += f"\ntarget {self.target}"
        if self.settings.output == "json":  # written as it is encoded: no copy of it all
            _write_json(payload)
        else:
            click.echo(human)

    def progress(self, message: str) -> None:
        click.echo(message, err=True)


def _write_json(payload: dict[str, Any]) -> None:
    """``payload`` as indented JSON on stdout, in pieces of about 64 KB as it is encoded (one
    string of it all is tens of MB at 50,000 keys; a write per token is slow)."""
    out = click.get_text_stream("stdout")
    pieces: list[str] = []
    size = 0
    for piece in json.JSONEncoder(indent=2, sort_keys=True).iterencode(payload):
        pieces.append(piece)
        size += len(piece)
        if size >= 65536:
            out.write("".join(pieces))
            pieces, size = [], 0
    out.write("".join(pieces) + "\n")
    out.flush()


def target_option(f):
    return click.option(
        "--target",
        "target_names",
        multiple=True,
        metavar="NAME",
        help="Only this target, a [[targets]] name of the --config file (repeatable). Needed "
        "when several targets are configured and the key is not in exactly one of them.",
    )(f)


def fleet_target_option(f):
    return click.option(
        "--target",
        "target_names",
        multiple=True,
        metavar="NAME",
        help="Only this target, a [[targets]] name of the --config file (repeatable); every "
        "target by default.",
    )(f)


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


def metrics_file_option(f):
    return click.option(
        "--metrics-file",
        metavar="PATH",
        type=click.Path(dir_okay=False),
        help="Also write this run's metrics (the daemon's families) in Prometheus text format "
        "to PATH, atomically, for node_exporter's textfile collector, e.g. "
        "/var/lib/node_exporter/textfile_collector/byok-keeper.prom. A file that cannot be "
        "written never stops the run: it is logged, and the run exits 1 after its work.",
    )(f)
