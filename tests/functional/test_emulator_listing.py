"""ListKeys pages through one kept listing (aliyun_local.kms.listing): every page still follows
each change, whether a call made it or the clock did."""

from __future__ import annotations

import json
import time
import urllib.request

from alibabacloud_kms20160120 import models as km
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec

from byok_keeper.crypto.material import load_private_key
from tests.functional.conftest import create_external_key, import_material


def _all(kms, filters: list | None = None) -> list[str]:
    ids: list[str] = []
    for number in range(1, 50):
        request = km.ListKeysRequest(page_number=number, page_size=2)
        if filters:
            request.filters = json.dumps(filters)
        body = kms.list_keys(request).body
        ids += [k.key_id for k in body.keys.key]
        if len(ids) >= body.total_count:
            return ids
    raise AssertionError("ListKeys never reached its TotalCount")


def _advance(emulator, seconds: int) -> None:
    req = urllib.request.Request(
        f"{emulator.url}/_local/clock",
        method="POST",
        data=json.dumps({"advance_seconds": seconds}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10):
        pass


def test_pages_follow_keys_created_between_them(kms):
    ids = [kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id for _ in range(5)]
    first = kms.list_keys(km.ListKeysRequest(page_number=1, page_size=2)).body
    assert [k.key_id for k in first.keys.key] == ids[:2]
    ids.append(kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id)
    last = kms.list_keys(km.ListKeysRequest(page_number=3, page_size=2)).body
    assert (last.total_count, [k.key_id for k in last.keys.key]) == (6, ids[4:])
    assert _all(kms) == ids


def test_pages_follow_the_clock_ending_deletions_and_expiring_material(emulator, kms):
    ids = [kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id for _ in range(3)]
    external = create_external_key(kms, "EC_P256")
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    import_material(kms, external, load_private_key(pem), expire_unix=int(time.time()) + 3600)
    kms.schedule_key_deletion(
        km.ScheduleKeyDeletionRequest(key_id=ids[0], pending_window_in_days=7)
    )
    pending = [{"Key": "KeyState", "Values": ["PendingImport"]}]
    assert _all(kms) == [*ids, external]
    assert _all(kms, pending) == []

    _advance(emulator, 2 * 3600)  # the material expires: nothing called, the listing follows
    assert _all(kms, pending) == [external]
    _advance(emulator, 8 * 86400)  # the deletion window ends
    assert _all(kms) == [*ids[1:], external]
