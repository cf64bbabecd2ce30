"""The Function Compute subset of aliyun-local (FC 2.0, API 2021-04-06)."""

API_VERSION = "2021-04-06"
