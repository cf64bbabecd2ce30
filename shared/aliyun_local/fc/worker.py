"""An FC instance: runs one function's handler, invocation after invocation, until killed.

Started by aliyun-local as ``python -I -S worker.py CODE_DIR MODULE FUNCTION [WORKDIR]`` (the
working directory: the code directory unless the emulator's ``working_dir`` says): isolated mode,
no site-packages, so only the deployed code (and the standard library) is importable, as on FC.
Protocol: one JSON line per invocation on stdin; one JSON line per answer on the original
stdout (the handler's own prints go to stderr, like FC's function log).
"""

import base64
import io
import json
import logging
import os
import sys
import traceback
import types


def _context(doc):
    ctx = types.SimpleNamespace(**{k: v for k, v in doc.items() if not isinstance(v, dict)})
    for name in ("credentials", "function", "service"):
        setattr(ctx, name, types.SimpleNamespace(**doc.get(name, {})))
    return ctx


_REQUEST_ID = [""]


def _runtime_log_handler():
    """FC's Python runtime puts a handler of its own on the root logger (its docs show
    ``<time> <requestId> [INFO] message``); so does this worker, so that a function adding a
    second handler beside it shows up as doubled lines."""

    def add_request_id(record):
        record.fc_request_id = _REQUEST_ID[0]
        return True

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(add_request_id)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(fc_request_id)s [%(levelname)s] %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main() -> None:
    code_dir, module_name, function_name = sys.argv[1:4]
    sys.path.insert(0, code_dir)
    os.chdir(sys.argv[4] if len(sys.argv) > 4 else code_dir)
    protocol = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), encoding="utf-8", write_through=True)
    os.dup2(2, 1)  # the handler's prints go to the function log
    sys.stdout = sys.stderr
    _runtime_log_handler()
    handler = None
    load_error = None
    try:
        module = __import__(module_name, fromlist=["_"])
        handler = getattr(module, function_name)
    except BaseException as exc:
        load_error = f"{type(exc).__name__}: {exc}"
    for line in sys.stdin:
        request = json.loads(line)
        _REQUEST_ID[0] = request["context"].get("request_id", "")
        if handler is None:
            answer = {"ok": False, "error_type": "HandlerNotFound", "error_message": load_error}
        else:
            try:
                event = base64.b64decode(request["event"])
                result = handler(event, _context(request["context"]))
                if isinstance(result, bytes):
                    body = result
                elif isinstance(result, str):
                    body = result.encode()
                elif result is None:
                    body = b""
                else:
                    body = json.dumps(result).encode()
                answer = {"ok": True, "body": base64.b64encode(body).decode()}
            except BaseException as exc:
                answer = {
                    "ok": False,
                    "error_type": type(exc).__name__,
                    "error_message": str(exc)[:2000],
                    "stack": traceback.format_exc(limit=5)[-4000:],
                }
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
