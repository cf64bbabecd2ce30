"""The KMS service of aliyun-local (API version 2016-01-20)."""

API_VERSION = "2016-01-20"
