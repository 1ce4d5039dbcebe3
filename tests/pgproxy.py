"""A TCP proxy on loopback that can cut a client off from PostgreSQL without closing anything.

``cut`` makes it stop moving bytes both ways and stall new connections, as a network partition
does (no RST, no FIN: the client just hears nothing); ``heal`` drops the stalled connections
(libpq reconnects) and serves new ones again.
"""

from __future__ import annotations

import selectors
import socket
import threading


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Proxy:
        self._thread.start()
        return self

    def cut(self) -> None:
        self._cut.set()

    def heal(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            a.close()
            b.close()
        self._cut.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.heal()
        self.listener.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                sock = key.fileobj
                if sock is self.listener:
                    client, _ = self.listener.accept()
                    if self._cut.is_set():
                        with self._lock:  # held open, never answered
                            self._pairs.append((client, socket.socket()))
                        continue
                    upstream = socket.create_connection(self.target)
                    peers[client], peers[upstream] = upstream, client
                    with self._lock:
                        self._pairs.append((client, upstream))
                    sel.register(client, selectors.EVENT_READ)
                    sel.register(upstream, selectors.EVENT_READ)
                    continue
                if self._cut.is_set():
                    continue
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                other = peers.get(sock)  # type: ignore[arg-type]
                if not data or other is None:
                    for s in (sock, other):
                        if s is not None:
                            peers.pop(s, None)  # type: ignore[arg-type]
                            try:
                                sel.unregister(s)
                            except (KeyError, ValueError):
                                pass
                            s.close()  # type: ignore[union-attr]
                    continue
                try:
                    other.sendall(data)
                except OSError:
                    pass
            if self._cut.is_set():
                # stop watching the connections: their bytes stay in the kernel, unread
                for s in list(peers):
                    try:
                        sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
            else:
                for s in list(peers):
                    if s.fileno() == -1:
                        peers.pop(s, None)
                        continue
                    try:
                        sel.get_key(s)
                    except KeyError:
                        sel.register(s, selectors.EVENT_READ)
