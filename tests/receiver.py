"""A real HTTP receiver on loopback for the webhook tests: a server in a thread of the
test's process that records every request and answers as the test scripts it (a status,
a redirect, or no answer at all)."""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.monotonic() when the request was read

    @property
    def text(self) -> str:
        return self.body.decode()


HANG = -1  # a scripted "answer": read the request, then never answer


@dataclass
class Receiver:
    """Answers each request to a path with the next scripted status for it, then with
    `default` (204). A 3xx carries `Location: <redirect_to>`."""

    default: int = 204
    redirect_to: str = ""
    scripts: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def answer(self, path: str, *statuses: int) -> None:
        """The next answers to `path`, in order (HANG: none)."""
        with self.lock:
            self.scripts.setdefault(path, []).extend(statuses)

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def next_status(self, path: str) -> int:
        with self.lock:
            script = self.scripts.get(path)
            return script.pop(0) if script else self.default

    def record(self, request: Received) -> None:
        with self.lock:
            self.received.append(request)


class Handler(BaseHTTPRequestHandler):
    server: "ReceiverServer"

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        receiver.record(Received(self.path, headers, body, time.monotonic()))
        status = receiver.next_status(self.path)
        if status == HANG:
            receiver.released.wait(60)  # until the test ends
            return
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", receiver.redirect_to)
        answer = b"" if status == 204 else f"answer {status}".encode()
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test reads `received`, not a log


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


def serve(receiver: Receiver, host: str = "127.0.0.1") -> Iterator[Receiver]:
    server = ReceiverServer((host, 0), Handler)
    server.receiver = receiver
    receiver.server = server
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()
        thread.join()
