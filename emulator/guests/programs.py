"""The small programs the fabric runs inside namespaces: an application server per backend
port answering ``<vm name> <peer ip>``, and a client making N parallel TCP connects; and what
one measurement found (`ProbeResult`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

SERVER = r"""
import socket, sys, threading
name, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
socks = []
for port in ports:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(128); socks.append(s)
def serve(s):
    while True:
        c, peer = s.accept()
        try: c.sendall(("%s %s\n" % (name, peer[0])).encode())
        except OSError: pass
        c.close()
for s in socks: threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CONNECT = r"""
import json, socket, sys, threading
vip, port, n, timeout, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    float(sys.argv[4]), sys.argv[5]
res = [None] * n
def one(i):
    s = socket.socket(); s.settimeout(timeout)
    try:
        if src: s.bind((src, 0))
        s.connect((vip, port))
        try: line = s.makefile().readline().strip()
        except OSError: line = ""
        res[i] = line or "?"
    except OSError:
        res[i] = None
    finally:
        s.close()
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(res))
"""


@dataclass
class ProbeResult:
    vip: str
    port: int
    ok: int
    total: int
    backends: Counter  # VM name -> successful connects it served
    peers: Counter  # source address the backend saw -> count

    @property
    def ratio(self) -> float:
        return self.ok / self.total if self.total else 0.0
