"""A synthetic fleet for the report's rendering tests and benchmark: the planner's own
``Decision`` data (pure dataclasses), deterministic for a seed."""

from __future__ import annotations

import random
import string
from datetime import datetime, timedelta

from byok_keeper.domain.lease import parse_lease
from byok_keeper.operations.report import Fleet, rows_from
from byok_keeper.planning.plan import ALERT, HOLD, OK, REIMPORT, RENEW, SKIP, Decision, Policy

SPECS = ("RSA_2048", "RSA_3072", "RSA_4096", "EC_P256", "EC_P256K", "EC_SM2")
# Decision, share of the fleet.
MIX = ((OK, 0.84), (RENEW, 0.05), (REIMPORT, 0.03), (HOLD, 0.03), (ALERT, 0.03), (SKIP, 0.02))


def synthetic_fleet(n: int, now: datetime, *, seed: int = 17) -> Fleet:
    """``n`` keys in every decision, expiries from hours to a year out, next sweep in 15 min."""
    rng = random.Random(seed)
    decisions = []
    for i in range(n):
        decision = rng.choices([d for d, _ in MIX], [w for _, w in MIX])[0] if i >= 6 else MIX[i][0]
        key_id = "key-" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=20))
        lease = parse_lease(rng.choice(["30d", "90d", "365d"]))
        state, expiry = "Enabled", now + timedelta(days=rng.uniform(8, lease.seconds / 86400))
        if decision == RENEW:
            expiry = now + timedelta(hours=rng.uniform(1, 24 * 7))
        elif decision == REIMPORT:
            state, expiry = "PendingImport", None
        elif decision == HOLD:
            expiry = now + timedelta(days=rng.uniform(0.5, 40))
        elif decision == ALERT:
            expiry = now + timedelta(days=rng.uniform(0.5, 20)) if i % 2 else None
            state = "Enabled" if expiry else "PendingImport"
        elif decision == SKIP:
            state, expiry = "PendingDeletion", None
        elif rng.random() < 0.05:
            expiry = None  # never expires
        decisions.append(
            Decision(
                key_id,
                decision,
                f"synthetic {decision.lower()}",
                state,
                rng.choice(SPECS),
                expiry,
                lease,
            )
        )
    rows = rows_from(decisions, [], Policy())
    return Fleet(now, now + timedelta(minutes=15), "cn-hangzhou", tuple(rows))
