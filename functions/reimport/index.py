"""FC reimport: re-establish one key (async from the sweep, or invoked by on-call).

Raises for retryable failures (FC retries, then OnFailure); returns {"ok": false, ...} for
permanent ones. See byok_keeper.fc for which is which.
"""

import json

from byok_keeper.fc import handle_reimport


def handler(event, context):
    return json.dumps(handle_reimport(event, context))
