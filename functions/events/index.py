"""FC events function: ActionTrail KMS events from EventBridge -> one look at the named key.

Returns {"ok": false, ...} for refused (malformed, foreign) events so FC does not retry them;
raises only when KMS could not be used, so FC retries. See byok_keeper.runtimes.fc_events.
"""

import json

from byok_keeper.runtimes.fc_events import handler as handle_events


def handler(event, context):
    return json.dumps(handle_events(event, context))
