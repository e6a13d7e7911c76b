"""A TLS server on 127.0.0.1 for tests of slow answers: it accepts until closed and hands each connection, wrapped
in TLS, to ``handle`` on a thread of its own. Subclasses decide what a slow server sends (see the trickle tests of
both clients: tests/unit/test_dataverse_transport_bounds.py, tests/provider/test_keyvault_https.py)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading


class LoopbackTLSServer:
    """Listens on an ephemeral loopback port with ``cert_file``/``key_file``; ``close`` stops every handler."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_file, key_file)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.origin = f"https://127.0.0.1:{self.port}"
        self.connections = 0
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def handle(self, conn: ssl.SSLSocket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError), self._context.wrap_socket(raw, server_side=True) as conn:
            self.handle(conn)
        raw.close()

    def close(self) -> None:
        self.stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)
