"""Wraps per second for each key spec: byok-keeper's wrap_key_material vs the seed procedure's
OpenSSL pipeline (openssl rand + pkeyutl + enc as subprocesses, as the seed runs it).

    python bench/wrap.py [--seconds 1.0] [--json]

Both sides wrap the same material under the same wrapping public key. The ratio is ours/OpenSSL
(higher is better for us). Results depend on the machine; docs/PERFORMANCE.md lists one run.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from byok_keeper.crypto import specs
from byok_keeper.crypto.material import load_private_key
from byok_keeper.crypto.wrapping import new_wrapping_key, wrap_key_material, wrapping_public_key_der

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.oracle: the OpenSSL command lines the tests use

from tests import oracle  # noqa: E402


def _rate(fn, seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def _our_wrap(material, public_key: str, alg: str) -> str:
    return wrap_key_material(material.import_bytes(), public_key, alg)


def _openssl_wrap(alg: str, tak: Path, pub: Path, work: Path) -> str:
    """One wrap exactly as the seed procedure does it, one subprocess per step."""
    return oracle.seed_wrap(alg == specs.SM2PKE_SM4_ECB, tak, pub, work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if shutil.which("openssl") is None:
        print(
            "bench/wrap.py: the openssl command line tool is needed for the baseline",
            file=sys.stderr,
        )
        return 2

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        iwk = {alg: new_wrapping_key(alg) for alg in specs.WRAPPING_ALGORITHMS}
        for spec_name, argv in oracle.KEYGEN.items():
            material = load_private_key(oracle.run(*argv), key_spec=spec_name)
            alg = material.spec.wrapping_algorithm
            pub_der = wrapping_public_key_der(iwk[alg])
            pub_b64 = base64.b64encode(pub_der).decode()
            pub_pem = work / "iwk_pub.pem"
            pub_pem.write_bytes(
                b"-----BEGIN PUBLIC KEY-----\n"
                + base64.encodebytes(pub_der)
                + b"-----END PUBLIC KEY-----\n"
            )
            # The baseline needs the TAK in a file, as the seed procedure does; these are
            # throwaway keys made for the benchmark, in a private temporary directory.
            tak = work / "tak.bin"
            tak.write_bytes(material.import_bytes())
            ours = _rate(partial(_our_wrap, material, pub_b64, alg), args.seconds)
            theirs = _rate(partial(_openssl_wrap, alg, tak, pub_pem, work), args.seconds)
            tak.unlink()
            material.wipe()
            rows.append(
                {
                    "spec": spec_name,
                    "algorithm": alg,
                    "ours_per_s": round(ours, 1),
                    "openssl_pipeline_per_s": round(theirs, 1),
                    "ratio": round(ours / theirs, 2),
                }
            )

    if args.json:
        print(json.dumps({"wrap": rows}))
        return 0
    print(f"{'spec':<10} {'algorithm':<42} {'ours/s':>9} {'openssl/s':>10} {'ratio':>7}")
    for r in rows:
        print(
            f"{r['spec']:<10} {r['algorithm']:<42} {r['ours_per_s']:>9} "
            f"{r['openssl_pipeline_per_s']:>10} {r['ratio']:>6}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
