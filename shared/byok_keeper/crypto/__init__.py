"""The crypto floor: private key material in memory, its formats (DER, PBES2), SM2 where the
libraries stop, the key-spec table and the wrapping for import.
"""
