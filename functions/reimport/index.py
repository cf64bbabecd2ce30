"""FC reimport: re-establish one key (invoked by on-call) or a batch (async from the sweep).

Raises for retryable failures (FC retries, then OnFailure); returns {"ok": false, ...} for
permanent ones. See byok_keeper.runtimes.fc (one key) and
byok_keeper.runtimes.fc_batch (a batch) for which is which.
"""

import json

from byok_keeper.runtimes.fc_batch import handler as handle_reimport


def handler(event, context):
    return json.dumps(handle_reimport(event, context))
