"""The answers aliyun-local gives where Alibaba Cloud's documentation is silent (or sources
disagree): one ``Setting`` per behaviour, the ``default`` and ``strict`` fidelity profiles, and
the ``FidelitySettings`` in force (``/_local/settings``, ``serve --set``). Each row is in
docs/FIDELITY.md. (Named apart from the agent's ``byok_keeper.core.settings.Settings``; this
"profile" is a fidelity profile, not an aliyun CLI credentials profile.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import invalid_parameter


@dataclass(frozen=True)
class Setting:
    """One behaviour the documentation leaves open (or where sources disagree): every answer
    aliyun-local can give, the default one and the one the ``strict`` profile picks."""

    name: str
    values: tuple[Any, ...]
    default: Any
    strict: Any
    why: str


# Each row is in docs/FIDELITY.md with its source; tests run the agent under each value.
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "primary_key_version",
            ("absent", "present"),
            "absent",
            "absent",
            "DescribeKey documents PrimaryKeyVersion for symmetric keys only",
        ),
        Setting(
            "disabled_key_after_import",
            ("Disabled", "Enabled"),
            "Disabled",
            "Disabled",
            "undocumented whether a Disabled key stays Disabled after a re-import",
        ),
        Setting(
            "hardware_accepts_asymmetric_import",
            (False, True),
            False,
            False,
            "the seed's table and the newest English page: hardware instances take no imported "
            "asymmetric material; the seed's later steps and the Chinese page import into both",
        ),
        Setting(
            "different_material_error",
            ("InvalidKeyMaterial", "InvalidParameter", "Rejected.UnsupportedOperation"),
            "InvalidKeyMaterial",
            "InvalidParameter",
            "undocumented: the code for importing other material than the first",
        ),
        Setting(
            "throttling_answer",
            (
                "Rejected.Throttling",
                "Rejected.Throttling/no-retry-after",
                "Throttling",
                "Throttling.User",
                "Throttling.Api",
            ),
            "Rejected.Throttling",
            "Throttling.User",
            "gateways answer 429 Rejected.Throttling and 400 Throttling* without retry-after",
        ),
        Setting(
            "max_tags_per_key",
            (20, 10),
            20,
            10,
            "docs say 10 or 20 tags per key (the seed: 20)",
        ),
        Setting(
            "instance_product_version",
            ("numeric", "named", "opaque"),
            "numeric",
            "opaque",
            "terraform validates GetKmsInstance's ProductVersion as 3 or 5; only ROS names "
            "software, hardware, ...",
        ),
        Setting(
            "actiontrail_event_source",
            ("acs.actiontrail", "acs.kms"),
            "acs.actiontrail",
            "acs.kms",
            "EventBridge's ActionTrail page: source acs.actiontrail, type "
            "actiontrail:ActionTrail:ApiCall; its KMS page: type kms:ActionTrail:ApiCall",
        ),
        Setting(
            "eventbridge_async_invocation_type",
            ("true-is-sync", "true-is-async"),
            "true-is-sync",
            "true-is-async",
            "an FC 3.0 eventbridge trigger's asyncInvocationType: FC 3.0's current struct page "
            "and SDK 4.8.3 read true as synchronous; FC 2.0's page (and an older FC 3.0 one) "
            "as asynchronous",
        ),
    )
}
PROFILES = ("default", "strict")


class FidelitySettings:
    """The answers in force for the undocumented behaviours (``/_local/settings``).

    ``profile("strict")`` picks the most hostile answer of each; ``update`` overrides single
    settings by name. Attribute access reads the value in force: ``settings.max_tags_per_key``.
    """

    def __init__(self, profile: str = "default") -> None:
        self._profile = "default"
        self._values: dict[str, Any] = {}
        self.apply_profile(profile)

    def apply_profile(self, profile: str) -> None:
        if profile not in PROFILES:
            raise invalid_parameter("profile", f"expected one of {', '.join(PROFILES)}")
        self._profile = profile
        self._values = {
            n: (s.strict if profile == "strict" else s.default) for n, s in SETTINGS.items()
        }

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def update(self, body: dict[str, Any]) -> None:
        """Apply ``{"profile": ...}`` first, then each ``name: value``; all or nothing."""
        body = dict(body)
        body.pop("overrides", None)  # as to_json shows them; the values themselves follow
        staged = FidelitySettings(body.pop("profile", self._profile))
        if "profile" not in body and staged._profile == self._profile:
            staged._values = dict(self._values)
        for name, value in body.items():
            setting = SETTINGS.get(name)
            if setting is None or not any(
                value == v and type(value) is type(v) for v in setting.values
            ):
                choices = ", ".join(json.dumps(v) for v in setting.values) if setting else ""
                why = f"one of {choices}" if setting else "unknown setting"
                raise invalid_parameter("settings", f"{name}: {why}")
            staged._values[name] = value
        self._profile, self._values = staged._profile, staged._values

    def to_json(self) -> dict[str, Any]:
        base = FidelitySettings(self._profile)._values
        overrides = sorted(n for n, v in self._values.items() if base[n] != v)
        return {"profile": self._profile, "overrides": overrides, **self._values}
