"""aliyun-local: a local emulator of the Alibaba Cloud KMS API, served over real HTTP."""

__version__ = "0.1.0"
