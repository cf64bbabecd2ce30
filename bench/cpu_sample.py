"""Run one ``byok-keeper`` command in this process and say where its CPU went: inside the
Alibaba Cloud SDK or not, and which functions are hot.

    python bench/cpu_sample.py OUT.json [--top N] -- sweep --output json ...

The SDK's share is exact: every public method of the KMS SDK's client and the OpenAPI core's
``call_api`` (and the clients' constructors) is wrapped to add the calling thread's CPU time
(``time.thread_time``) spent inside it, the request signing, HTTP stack and response parsing it
drives included, waits on the socket excluded (a thread waiting uses no CPU).

The hot list is a sample: every 5 ms a thread reads each thread's CPU clock
(``pthread_getcpuclockid``) and charges the CPU used since the last tick to the innermost
function it is in now (a CPU-weighted profile; a thread that just went to sleep or to wait on a
socket gets its last CPU charged to the waiting frame, so read it as "near here").
``OUT.json`` gets the figures; the command's own exit code is this process's.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from pathlib import Path

INTERVAL = 0.005


class SdkClock:
    """CPU seconds spent inside wrapped SDK methods, outermost call only, every thread."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.seconds = 0.0

    def wrap(self, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            depth = getattr(self.local, "depth", 0)
            if depth:
                return fn(*args, **kwargs)
            self.local.depth = 1
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                self.local.depth = 0
                with self.lock:
                    self.seconds += spent

        return timed

    def install(self) -> None:
        from alibabacloud_kms20160120.client import Client as Kms
        from alibabacloud_tea_openapi.client import Client as OpenApi

        for name, fn in list(vars(Kms).items()):
            if callable(fn) and not name.startswith("_") and not name.endswith("_async"):
                setattr(Kms, name, self.wrap(fn))
        for cls, name in ((Kms, "__init__"), (OpenApi, "__init__"), (OpenApi, "call_api")):
            setattr(cls, name, self.wrap(vars(cls)[name]))


class Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="cpu-sampler", daemon=True)
        self.stop = threading.Event()
        self.last: dict[int, float] = {}
        self.sampled = 0.0
        self.hot: dict[str, float] = {}
        self.own_cpu = 0.0

    def _charge(self, frame, spent: float) -> None:
        code = frame.f_code
        where = f"{code.co_filename.rsplit('site-packages/', 1)[-1]}:{code.co_name}"
        self.hot[where] = self.hot.get(where, 0.0) + spent
        self.sampled += spent

    def tick(self) -> None:
        me = threading.get_ident()
        for tid, frame in sys._current_frames().items():
            if tid == me:
                continue
            try:
                cpu = time.clock_gettime(time.pthread_getcpuclockid(tid))
            except OSError:  # the thread ended meanwhile
                continue
            spent = cpu - self.last.get(tid, 0.0)
            self.last[tid] = cpu
            if spent > 0:
                self._charge(frame, spent)

    def run(self) -> None:
        while not self.stop.wait(INTERVAL):
            self.tick()
        self.tick()
        self.own_cpu = time.thread_time()

    def figures(self, top: int) -> dict:
        hot = sorted(self.hot.items(), key=lambda kv: -kv[1])[:top]
        return {
            "sampled_cpu_s": round(self.sampled, 3),
            "sampler_cpu_s": round(self.own_cpu, 3),
            "hot": [[where, round(s, 3)] for where, s in hot],
        }


def _peak() -> float:
    """This process's peak RSS in MB since it started this program: ``VmHWM`` (the parent's
    ``wait4`` figure would keep what the forked child held before ``exec``: the seeder's
    memory, 290 MB at 50,000 keys)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    argv = sys.argv[1:]
    if len(argv) < 2 or "--" not in argv:
        print("usage: cpu_sample.py OUT.json [--top N] -- BYOK-KEEPER-ARGS...", file=sys.stderr)
        return 2
    split = argv.index("--")
    out, options, command = Path(argv[0]), argv[1:split], argv[split + 1 :]
    top = int(options[options.index("--top") + 1]) if "--top" in options else 25
    sampler, sdk = Sampler(), SdkClock()
    sampler.start()
    try:
        sdk.install()
        from byok_keeper.runtimes.cli import main as cli_main

        return cli_main(command)
    finally:
        sampler.stop.set()
        sampler.join()
        figures = sampler.figures(top) | {"sdk_cpu_s": round(sdk.seconds, 3), "rss_mb": _peak()}
        out.write_text(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
