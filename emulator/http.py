"""The emulator's HTTP servers: ARM over TLS (handshakes in the request's own thread) and the
managed-identity token endpoint; one request handler class per server."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

__all__ = ["DROP", "EmulatorHttpServer", "handler_for"]

DROP = object()  # a handler result: close the socket without answering

class EmulatorHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls is None:
            return sock, addr
        # Handshake lazily, in the request's own thread: a stalled client cannot block accept().
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        # TLS handshakes aborted by clients and resets are normal under fault tests.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            super().handle_error(request, client_address)


def handler_for(emu, arm: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "arm-emulator"

        def log_message(self, *args):  # quiet; the request log is emu.requests
            pass

        def _send(self, status: int, headers: dict, body) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not arm:
                url = urlsplit(self.path)
                if url.path != "/msi/token" or self.command != "GET":
                    return self._send(404, {}, {"statusCode": 404, "message": "Not found"})
                status, body = emu.tokens.token_response(self.headers, dict(parse_qsl(url.query)))
                return self._send(status, {}, body)
            result = emu.pipeline.handle(self.command, self.path, self.headers, raw)
            if result is DROP:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self._send(*result)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

    return Handler
