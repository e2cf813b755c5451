"""A loopback HTTP receiver for connector and callback tests."""

import http.server
import ssl
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Received:
    path: str
    headers: dict
    body: str


@dataclass
class Receiver:
    """Answers each POST with the next scripted (status, delay) and records it.

    With `tls`, it serves HTTPS and records the server name each client asked for (SNI).
    """

    script: list = field(default_factory=list)
    default: tuple = (200, 0.0)
    requests: list = field(default_factory=list)
    url: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    tls: ssl.SSLContext | None = None
    server_names: list = field(default_factory=list)

    def start(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                receiver.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status, delay = receiver.script.pop(0) if receiver.script else receiver.default
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                if 300 <= status < 400:
                    # A redirect to a private address the connector must not follow.
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                self.wfile.write(f"status {status}".encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self.server.server_address[1]
        scheme = "http"
        if self.tls is not None:
            self.tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{self.host}:{self.port}/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
