"""The Function Compute subset of aliyun-local: FC 2.0 (API 2021-04-06, services) and FC 3.0
(API 2023-03-30, functions without services)."""

API_VERSION = "2021-04-06"
API_VERSION_V3 = "2023-03-30"
V3 = ""  # the "service" of FC 3.0 functions
