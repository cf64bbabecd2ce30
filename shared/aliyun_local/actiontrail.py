"""ActionTrail, as far as EventBridge sees it: every KMS write call becomes a management event
(the ActionTrail record), wrapped in the CloudEvents envelope EventBridge delivers.

Sources (docs/FIDELITY.md, "Events"): EventBridge's "ActionTrail events" page (type
``actiontrail:ActionTrail:ApiCall``, only write events reach EventBridge, a sample record),
EventBridge's "KMS events" page (``kms:ActionTrail:ApiCall``: the two pages disagree on the
source, hence the ``actiontrail_event_source`` setting), ActionTrail's "Management event
structure" page (the record's fields), EventBridge's "Event overview" (the envelope).

Key material, import tokens, plaintexts and secret values never enter a record: those
parameters are left out of ``requestParameters``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone
from typing import Any

from .clock import iso
from .errors import ApiError

# KMS calls that change something: ActionTrail's eventRW "Write". Reads (Describe*, List*,
# Get*) and cryptographic calls are not delivered to EventBridge.
WRITE_ACTIONS = frozenset(
    {
        "CreateKey",
        "CreateAlias",
        "TagResource",
        "UntagResource",
        "ImportKeyMaterial",
        "DeleteKeyMaterial",
        "EnableKey",
        "DisableKey",
        "ScheduleKeyDeletion",
        "CancelKeyDeletion",
        "CreateKeyVersion",
        "UpdateRotationPolicy",
        "CreateSecret",
        "PutSecretValue",
    }
)
# The signature's own parameters: not part of what the caller asked for.
_PROTOCOL_PARAMS = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "SecurityToken",
        "Signature",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureVersion",
        "SignatureType",
        "Timestamp",
    }
)
# Secret-bearing parameters: never recorded by aliyun-local (whatever ActionTrail does).
_SECRET_PARAMS = frozenset(
    {
        "EncryptedKeyMaterial",
        "ImportToken",
        "Plaintext",
        "CiphertextBlob",
        "SecretData",
        "Digest",
        "Value",
    }
)
SOURCES = {
    "acs.actiontrail": "actiontrail:ActionTrail:ApiCall",
    "acs.kms": "kms:ActionTrail:ApiCall",
}


def _user_identity(access_key_id: str, account_id: str) -> dict[str, Any]:
    # STS credentials (the FC role's among them) are an assumed role; any other key a RAM user.
    principal = str(int(hashlib.sha256(access_key_id.encode()).hexdigest()[:15], 16))
    if access_key_id.startswith("STS."):
        return {
            "type": "assumed-role",
            "accountId": account_id,
            "principalId": f"{principal}:aliyun-local",
            "accessKeyId": access_key_id,
            "userName": "aliyun-local-role:aliyun-local",
        }
    return {
        "type": "ram-user",
        "accountId": account_id,
        "principalId": principal,
        "accessKeyId": access_key_id,
        "userName": access_key_id,
    }


def kms_record(
    *,
    action: str,
    params: dict[str, str],
    request_id: str,
    region: str,
    account_id: str,
    access_key_id: str,
    source_ip: str,
    user_agent: str,
    event_time: float,
    error: ApiError | None = None,
) -> dict[str, Any]:
    """The ActionTrail management event of one KMS API call."""
    host = f"kms.{region}.aliyuncs.com"
    request_parameters: dict[str, Any] = {
        k: v for k, v in params.items() if k not in _PROTOCOL_PARAMS | _SECRET_PARAMS
    }
    request_parameters.update(AcsHost=host, AcsProduct="Kms", RequestId=request_id, HostId=host)
    record: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "eventVersion": 1,
        "eventSource": host,
        "eventCategory": "Management",
        "eventType": "ApiCall",
        "eventRW": "Write",
        "eventName": action,
        "serviceName": "Kms",
        "apiVersion": "2016-01-20",
        "acsRegion": region,
        "eventTime": iso(event_time),
        "isGlobal": False,
        "requestId": request_id,
        "sourceIpAddress": source_ip,
        "userAgent": user_agent,
        "userIdentity": _user_identity(access_key_id, account_id),
        "requestParameters": request_parameters,
        "recipientAccountId": account_id,
    }
    key_id = params.get("KeyId")
    if key_id:
        record["referencedResources"] = {"ACS::KMS::Key": [key_id]}
    if error is not None:
        record["errorCode"] = error.code
        record["errorMessage"] = error.message
    return record


def cloud_event(record: dict[str, Any], *, source: str, account_id: str) -> dict[str, Any]:
    """The record as EventBridge delivers it: a CloudEvents 1.0 envelope around ``data``."""
    region = record["acsRegion"]
    key_id = record["requestParameters"].get("KeyId", "")
    published = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "specversion": "1.0",
        "id": record["eventId"],
        "source": source,
        "type": SOURCES[source],
        # Best guess: the subject names the key the call was about (unverified).
        "subject": f"acs:kms:{region}:{account_id}:key/{key_id}"
        if key_id
        else f"acs:kms:{region}:{account_id}:*",
        "datacontenttype": "application/json;charset=utf-8",
        "time": record["eventTime"],
        "aliyunaccountid": account_id,
        "aliyunoriginalaccountid": account_id,
        "aliyunregionid": region,
        "aliyuneventbusname": "default",
        "aliyunpublishtime": published,
        "data": record,
    }
