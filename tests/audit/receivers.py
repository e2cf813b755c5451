"""Loopback receivers that stand in for a syslog collector, an OCSF HTTP endpoint and
an OpenTelemetry collector. Each keeps what it received, in order, and can be down."""

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


class SyslogReceiver:
    """A TCP (or TLS) syslog collector; `messages()` splits octet-counted frames."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None):
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.tls = tls
        self.data = bytearray()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                with conn:
                    while chunk := conn.recv(65536):
                        self.data.extend(chunk)
            except (OSError, ssl.SSLError):
                continue

    def messages(self) -> list[bytes]:
        data, out = bytes(self.data), []
        while data:
            length, _, rest = data.partition(b" ")
            out.append(rest[: int(length)])
            data = rest[int(length) :]
        return out

    def events(self) -> list[dict]:
        return [json.loads(message.partition(b"] ")[2]) for message in self.messages()]

    def close(self):
        self.server.close()


class HttpReceiver:
    """An HTTP endpoint that answers `status` (503 while down) and keeps accepted bodies."""

    def __init__(self, parse):
        receiver = self
        self.status = 200
        self.bodies: list = []
        self.requests = 0
        self.headers: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests += 1
                if receiver.status == 200:
                    receiver.bodies.append(parse(body))
                    receiver.headers.append(dict(self.headers))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def ocsf_receiver() -> HttpReceiver:
    return HttpReceiver(json.loads)


def _otlp_parse(body: bytes) -> list[dict]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    request.ParseFromString(body)
    records = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = {a.key: a.value for a in record.attributes}
                records.append(
                    {
                        "seq": attributes["aispm.seq"].int_value,
                        "hash": attributes["aispm.hash"].string_value,
                        "body": json.loads(record.body.string_value),
                        "service": resource_logs.resource.attributes[0].value.string_value,
                    }
                )
    return records


def otlp_receiver() -> HttpReceiver:
    return HttpReceiver(_otlp_parse)
