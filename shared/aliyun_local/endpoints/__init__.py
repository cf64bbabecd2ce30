"""The request handling of each emulated service, one module each: ``kms`` (the KMS ports),
``sts`` (the STS port), ``fc`` (FC 2.0 and 3.0 paths) and ``admin`` (the unsigned ``/_local/``
API). ``server.py`` routes a request to one of them; each reads and changes the ``Emulator``."""

# A handler's answer meaning: close the connection without answering (a transport fault).
DROP = object()
