"""The domain floor: facts and rules every floor uses, with no SDK and no KMS call (errors, exit
codes, a key's state, tags and leases, the one atomic file write, the log setup with its
redaction, the audit line).
"""
