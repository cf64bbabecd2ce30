"""The gateway floor: every call to Alibaba Cloud's KMS (kms/) and STS (sts.py), over one
transport; budgets, retries and error mapping.
"""
