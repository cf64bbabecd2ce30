"""The daemon's ``/metrics`` endpoint: a small HTTP server that cannot be used to stop the daemon.

``prometheus_client.start_http_server`` gives every connection a thread and waits for its
request with no timeout: idle connections pile up threads until the process's task limit stops
the sweeps' own threads (issue 25). This server bounds both:

* at most ``MAX_CONNECTIONS`` connections are served at once (a thread each); one more is
  answered ``503`` with ``Retry-After`` and closed at once, from the accepting thread;
* each connection's socket operations time out after ``read_timeout`` seconds, so a client
  that connects and sends nothing loses its slot.

A client trickling a byte at a time can still keep a slot; it costs at most ``MAX_CONNECTIONS``
threads and the scrapes that are refused meanwhile, never a sweep: sweeps never wait on this
server (they share only ``FleetMetrics``' lock, held for a copy of figures).
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_CONNECTIONS = 8
READ_TIMEOUT = 5.0
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
    b"Connection: close\r\n\r\n"
)


class _MetricsHandler(BaseHTTPRequestHandler):
    registry: Any = None  # set on the subclass ``serve_registry`` makes
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive to hold a slot

    def do_GET(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape on stderr (the daemon's logs are structured)."""


class BoundedMetricsServer(ThreadingHTTPServer):
    """A threading HTTP server with a bounded number of connections in service."""

    daemon_threads = True
    block_on_close = False
    # Connections past the listen backlog wait in the kernel (no thread, no memory of ours) and
    # are answered, or refused, as they are accepted; a deeper backlog refuses them sooner.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.settimeout(1.0)
            request.sendall(_REFUSAL)
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


def serve_registry(
    registry: Any,
    host: str,
    port: int,
    *,
    read_timeout: float = READ_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> BoundedMetricsServer:
    """Serve ``registry`` on ``host:port`` from a daemon thread. Raises ``OSError``."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    handler = type("Handler", (_MetricsHandler,), {"registry": registry, "timeout": read_timeout})
    server_class = type("Server", (BoundedMetricsServer,), {"address_family": family})
    server = server_class((host, port), handler, max_connections)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server
