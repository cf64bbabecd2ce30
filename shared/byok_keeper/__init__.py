"""byok-keeper: keep imported (BYOK) asymmetric keys in Alibaba Cloud KMS usable."""

__version__ = "0.1.0"
