"""A TCP forwarder that can refuse connections: a storage outage the SDK meets for real.

The clients under test talk to the gate's port, unchanged; while the gate is shut it closes each
connection as soon as it is accepted (what a blip of the storage front end looks like to azure-core:
a connection reset, retried, then `ServiceRequestError`), and connections already open are cut.

    with TcpGate(upstream_port) as gate:
        url = f"http://127.0.0.1:{gate.port}/devstoreaccount1"
        gate.shut(); ...; gate.open()
"""

from __future__ import annotations

import socket
import threading


class TcpGate:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_open = True
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def shut(self) -> None:
        with self.lock:
            self.is_open = False
            for conn in self.connections:
                cut(conn)
            self.connections.clear()

    def open(self) -> None:
        with self.lock:
            self.is_open = True

    def close(self) -> None:
        self.shut()
        self.listener.close()

    def __enter__(self) -> TcpGate:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # listener closed
            with self.lock:
                if not self.is_open:
                    client.close()
                    continue
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(src, dst), daemon=True).start()

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            cut(src)
            cut(dst)
            with self.lock:
                self.connections.discard(src)
                self.connections.discard(dst)


def cut(conn: socket.socket) -> None:
    """Close now: shutdown() sends the FIN and wakes a thread blocked in recv(), which close()
    alone does not do while that thread holds the socket."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
