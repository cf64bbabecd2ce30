"""What names and describes a key: its aliases (CreateAlias, ListAliases...), its tags and its
key policy."""

from __future__ import annotations

import json
import threading

from ..clock import Clock
from .errors import invalid_parameter, resource_exists, state_rejected
from .keys import PENDING_DELETION, Key, tag_char
from .settings import FidelitySettings


class KeyLabels:
    """Aliases, tags and the key policy, for ``KmsBackend`` (``models.py``)."""

    lock: threading.RLock
    region: str
    account_id: str
    clock: Clock
    settings: FidelitySettings
    keys: dict[str, Key]
    aliases: dict[str, str]

    def create_alias(self, alias: str, key_id: str) -> None:
        """CreateAlias: 1-255 characters, prefix ``alias/`` (not ``alias/acs``), then letters,
        digits, ``_ - /`` (the seed page). An existing alias is never moved."""
        name = alias[len("alias/") :]
        if (
            not alias.startswith("alias/")
            or not 1 <= len(alias) <= 255
            or not name
            or alias.startswith("alias/acs")
            or not all(c.isascii() and (c.isalnum() or c in "_-/") for c in name)
        ):
            raise invalid_parameter(
                "AliasName", "alias/ followed by letters, digits, _ - /, at most 255 characters"
            )
        with self.lock:
            key = self.get_key(key_id)
            if alias in self.aliases:
                raise resource_exists(f"The alias {alias}")
            self.aliases[alias] = key.key_id
            self.changed()

    def aliases_of(self, key_id: str | None = None) -> list[dict[str, str]]:
        with self.lock:
            wanted = self.get_key(key_id).key_id if key_id is not None else None
            return [
                {
                    "AliasName": name,
                    "AliasArn": f"acs:kms:{self.region}:{self.account_id}:{name}",
                    "KeyId": target,
                }
                for name, target in sorted(self.aliases.items())
                if wanted is None or target == wanted
            ]

    def key_policy(self, key_id: str) -> str:
        key = self.get_key(key_id)
        if key.policy:
            return key.policy
        principal = f"acs:ram::{self.account_id}:*"
        return json.dumps(
            {
                "Version": "1",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"RAM": [principal]},
                        "Action": ["kms:*"],
                        "Resource": ["*"],
                    }
                ],
            }
        )

    def _check_tags(self, new: dict[str, str], existing: dict[str, str]) -> None:
        """The seed page's rules: key and value 1-128 (value 0-128) characters of letters,
        digits, spaces and ``/ \\ _ - . + = : @``; keys not starting with aliyun or acs:."""
        for k, v in new.items():
            if not k or len(k) > 128 or len(v) > 128:
                raise invalid_parameter("Tags", "TagKey 1-128 and TagValue 0-128 characters")
            if not all(tag_char(c) for c in k + v):
                raise invalid_parameter(
                    "Tags", "only letters, digits, spaces and / \\ _ - . + = : @ are allowed"
                )
            if k.lower().startswith(("aliyun", "acs:")):
                raise invalid_parameter("Tags", "TagKey must not start with aliyun or acs:")
        if len({**existing, **new}) > self.settings.max_tags_per_key:
            raise invalid_parameter(
                "Tags", f"a key carries at most {self.settings.max_tags_per_key} tags"
            )

    def tag_key(self, key_id: str, tags: dict[str, str]) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.state == PENDING_DELETION:  # the state-impact doc: tags are refused
                raise state_rejected(key.state)
            self._check_tags(tags, key.tags)
            key.tags.update(tags)
            self.changed()

    def untag_key(self, key_id: str, tag_keys: list[str]) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.state == PENDING_DELETION:
                raise state_rejected(key.state)
            for k in tag_keys:
                key.tags.pop(k, None)
            self.changed()
