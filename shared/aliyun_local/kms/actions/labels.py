"""What names and describes a key: aliases, the key policy, tags."""

from __future__ import annotations

from typing import Any

from ..errors import invalid_parameter, missing_parameter
from ..models import KmsBackend
from . import Params, action


@action
def create_alias(b: KmsBackend, p: Params) -> dict[str, Any]:
    b.create_alias(p.req("AliasName"), p.req("KeyId"))
    return {}


def _alias_page(aliases: list[dict[str, str]], p: Params) -> dict[str, Any]:
    number, size = p.int("PageNumber", 1), p.int("PageSize", 10)
    if number < 1 or not 1 <= size <= 100:
        raise invalid_parameter("PageSize", "PageNumber >= 1 and PageSize 1-100")
    page = aliases[(number - 1) * size : number * size]
    return {
        "Aliases": {"Alias": page},
        "PageNumber": number,
        "PageSize": size,
        "TotalCount": len(aliases),
    }


@action
def list_aliases(b: KmsBackend, p: Params) -> dict[str, Any]:
    return _alias_page(b.aliases_of(), p)


@action
def list_aliases_by_key_id(b: KmsBackend, p: Params) -> dict[str, Any]:
    return _alias_page(b.aliases_of(p.req("KeyId")), p)


@action
def get_key_policy(b: KmsBackend, p: Params) -> dict[str, Any]:
    return {"Policy": b.key_policy(p.req("KeyId"))}


@action
def list_resource_tags(b: KmsBackend, p: Params) -> dict[str, Any]:
    key = b.get_key(p.req("KeyId"))
    tags = [{"KeyId": key.key_id, "TagKey": k, "TagValue": v} for k, v in key.tags.items()]
    return {"Tags": {"Tag": tags}}


@action
def tag_resource(b: KmsBackend, p: Params) -> dict[str, Any]:
    tags = p.tags()
    if not tags:
        raise missing_parameter("Tags")
    b.tag_key(p.req("KeyId"), tags)
    return {}


@action
def untag_resource(b: KmsBackend, p: Params) -> dict[str, Any]:
    keys = p.json("TagKeys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise invalid_parameter("TagKeys", "a non-empty JSON list of tag keys")
    b.untag_key(p.req("KeyId"), keys)
    return {}
