"""A real local HTTP receiver for webhook tests: records every request, answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A handler told to hang waits at most this long, so a failed test cannot leave threads behind.
HANG_MAX_S = 30


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]
    at: float  # time.monotonic() when the request arrived


class Receiver:
    """`respond(request, number)` returns an HTTP status, or None to never answer."""

    def __init__(self, respond: Callable[[Received, int], int | None] = lambda request, number: 200):
        self.respond = respond
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                request = Received(self.rfile.read(length), dict(self.headers.items()), time.monotonic())
                with receiver._lock:
                    receiver.requests.append(request)
                    number = len(receiver.requests)
                status = receiver.respond(request, number)
                if status is None:
                    receiver._release.wait(HANG_MAX_S)
                    return
                payload = b"ok" if status < 400 else b"boom"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # The default backlog of 5 resets connections when a dispatcher sends a batch at once.
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
