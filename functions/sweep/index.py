"""FC timer-triggered sweep: discover, plan, re-establish (inline) or fan out (fc-async).

Thin on purpose: the core is ``byok_keeper.runtimes.fc.handle_sweep``. Importing this module is
cheap;
the SDK loads on the first invocation and stays warm.
"""

import json

from byok_keeper.runtimes.fc import handle_sweep


def handler(event, context):
    return json.dumps(handle_sweep(event, context))
