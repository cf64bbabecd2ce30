"""The acceptance run: the first real account tells us what docs/FIDELITY.md got wrong.

Opt-in, as Terraform's ``TF_ACC=1`` is: ``BYOK_ACCEPTANCE=1 make acceptance`` with credentials
(the standard chain: ``ALIBABA_CLOUD_ACCESS_KEY_ID``/``_SECRET``, a profile, an instance role),
a region (``BYOK_REGION``) and a KMS instance (``BYOK_ACCEPTANCE_INSTANCE``). It creates its own
throwaway EXTERNAL keys (tagged ``byok-keeper:acceptance``), drives the agent through
enrollment, deletion, expiry, restore and holds, writes a report of every answer that differs
from aliyun-local's default profile (each naming its FIDELITY.md row), and schedules every key
it made for deletion at the end (7 days, the shortest window), whatever happened.

``tests/functional/test_acceptance.py`` runs it against aliyun-local under both profiles, so it
stays working; it lives under tests/ because it calls what the agent never may
(DeleteKeyMaterial, DisableKey, ScheduleKeyDeletion) through the SDK directly.
"""
