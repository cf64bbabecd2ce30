"""The one fleet loop (``fleet_sweep.sweep_fleet``): what its three users (the CLI, FC, the
daemon) pass in is all that differs; each target's failure is its own, in the targets' order."""

from __future__ import annotations

from byok_keeper.core.fleet_sweep import sweep_fleet
from byok_keeper.core.targets import Target
from byok_keeper.domain.errors import ConfigError

TARGETS = [Target(n, "cn-hangzhou", f"10000000000000{i}") for i, n in enumerate("abcd")]


def test_each_target_is_swept_with_its_own_deps_and_fails_alone():
    no_deps: list[str] = []

    def deps_for(target: Target) -> str:
        if target.name == "b":
            raise ConfigError("role for b cannot be assumed")
        return f"deps-{target.name}"

    def sweep_one(target: Target, deps: str) -> str:
        if target.name == "c":
            raise RuntimeError("secret detail never shown")
        return f"{target.name}:{deps}"

    runs = sweep_fleet(
        TARGETS, deps_for, sweep_one, concurrency=8, on_no_deps=lambda t: no_deps.append(t.name)
    )
    assert [r.target.name for r in runs] == ["a", "b", "c", "d"]
    assert [r.value for r in runs] == ["a:deps-a", None, None, "d:deps-d"]
    assert [r.error for r in runs] == [
        None,
        "role for b cannot be assumed",
        "unexpected RuntimeError",
        None,
    ]
    assert runs[1].bad_input and not runs[2].bad_input
    assert no_deps == ["b"]  # FC's metrics line for a target that could not run: only then


def test_one_target_runs_without_a_pool_and_no_callback_is_needed():
    runs = sweep_fleet(TARGETS[:1], lambda t: t.region, lambda t, d: d, concurrency=1)
    assert [(r.ok, r.value) for r in runs] == [(True, "cn-hangzhou")]
