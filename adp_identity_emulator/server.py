"""The emulator's HTTPS front: one TLS listening socket per origin on 127.0.0.1, each bound to a service.

Real clients (azure-identity, requests, the Pulumi provider) talk to the emulator exactly as they would to
Entra ID or Dataverse: over TLS, with HTTP/1.1 keep-alive, to an origin whose URL they were given. This module
is the only place that touches sockets. Per request it:

1. reads the request and builds an :class:`EmuRequest`,
2. asks the :class:`FaultInjector` whether this request meets a fault (latency, status, drop, lost response),
3. for a Dataverse origin, admits the request against the caller's service protection limits (a breach is
   answered 429 at once; see ``dataverse/limits.py``),
4. calls the service bound to the origin (unless a fault answers first), timing it for the execution-time limit,
5. records a :class:`LogEntry` - before answering, so a client that got its answer always finds it logged,
6. writes the :class:`EmuResponse` (or closes the connection, for ``drop`` / ``lost_response``).

TLS is negotiated on the connection's own thread, so one slow client cannot stall the accept loop.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt

from adp_identity_emulator.dataverse.limits import Refusal, ServiceProtection, Ticket
from adp_identity_emulator.faults import Fault, FaultInjector, fault_response
from adp_identity_emulator.http import EmuRequest, EmuResponse, Headers, Service
from adp_identity_emulator.log import RequestLog

logger = logging.getLogger("adp_identity_emulator")

HOST = "127.0.0.1"
_HANDSHAKE_TIMEOUT = 10.0
_IDLE_TIMEOUT = 120.0  # keep-alive connections idle longer than this are closed
_POLL_INTERVAL = 0.05  # how quickly serve_forever notices stop()
_NO_BODY = {204, 304}


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Server-side TLS settings shared by every origin."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True)
class Route:
    """What an origin serves: the service, and how its requests are named in the log."""

    service: Service
    kind: str  # "entra" | "dataverse" | "keyvault"
    env: str | None = None  # environment / vault name
    kind_of: Callable[[str], str] | None = None  # per-path log name (Entra logs /issuers/... as "issuer")
    protection: ServiceProtection | None = None  # Dataverse's per-caller limits of this origin

    def kind_for(self, path: str) -> str:
        return self.kind_of(path) if self.kind_of else self.kind


def bearer_caller(authorization: str | None) -> str | None:
    """The ``appid`` of a bearer token, decoded WITHOUT verification - for the request log only."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    try:
        claims = jwt.decode(authorization[7:].strip(), options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    caller = claims.get("appid") or claims.get("azp")
    return str(caller) if caller else None


class _OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, port: int, front: HttpsServer) -> None:
        self.front = front
        self.route: Route | None = None
        super().__init__((HOST, port), _Handler)
        self.origin = f"https://{HOST}:{self.server_address[1]}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(_HANDSHAKE_TIMEOUT)
            connection = self.front.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that does not trust the CA, or went away mid-handshake
        self.front.track(connection)
        try:
            self.RequestHandlerClass(connection, client_address, self)  # type: ignore[arg-type]
        finally:
            self.front.untrack(connection)
            _close(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that disconnects mid-answer is normal (and provoked by faults); keep stderr quiet.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    server: _OriginServer

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the RequestLog, not to stderr."""

    def _dispatch(self) -> None:
        route = self.server.route
        front = self.server.front
        path, _, query = self.path.partition("?")
        method = self.command
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(EmuResponse.json(400, {"error": {"code": "BadRequest", "message": "Unreadable body."}}))
            return
        if route is None:  # pragma: no cover - routes are bound before serving starts
            self._write(EmuResponse.json(503, {"error": {"code": "NotReady", "message": "Origin not ready."}}))
            return
        kind = route.kind_for(path)
        caller = bearer_caller(self.headers.get("Authorization"))
        fault = front.faults.draw(kind, method, path)

        def record(status: int, operations: list[tuple[str, str, int]] | None = None, name: str | None = None) -> None:
            front.log.record(
                service=kind,
                env=route.env,
                method=method,
                path=path,
                query=query,
                status=status,
                caller=caller,
                operations=operations,
                fault=name,
            )

        reaches_service = fault is None or fault.kind in ("latency", "lost_response")
        ticket: Ticket | None = None
        if reaches_service and route.protection is not None and caller is not None:
            verdict = route.protection.admit(caller)
            if isinstance(verdict, Refusal):
                refused = verdict.response(route.protection.headers(caller))
                record(refused.status)
                self._write(refused)
                return
            ticket = verdict
        started = time.perf_counter()
        if fault is not None and fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        if fault is not None and fault.kind == "drop":
            record(0, name="drop")
            self.close_connection = True  # nothing written: the client sees the connection close
            return
        injected = fault_response(fault) if fault is not None else None
        if injected is not None and fault is not None:
            record(injected.status, name=fault.kind)
            self._write(injected)
            return
        request = EmuRequest(method, path, query, Headers(dict(self.headers.items())), body, self.server.origin)
        if ticket is not None:
            response = self._call_protected(route, request, ticket, started)
        else:
            response = self._call(route, request)
            if route.protection is not None:
                response.headers.update(route.protection.headers(None))  # the DOP hint, for anyone
        if fault is not None and fault.kind == "lost_response":
            record(response.status, response.operations, "lost_response")
            self.close_connection = True  # committed, but the answer never leaves
            return
        record(response.status, response.operations, _name(fault))
        self._write(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _call_protected(self, route: Route, request: EmuRequest, ticket: Ticket, started: float) -> EmuResponse:
        """Serve an admitted request, count its execution time (from ``started``, which precedes an injected
        latency, or from the service call alone) and add the rate-limit headers. A 401 is not counted: Dataverse
        cannot tell whose budget it would be."""
        assert route.protection is not None
        protection = route.protection
        served = time.perf_counter()
        response = self._call(route, request)  # never raises: a failing service is a 500
        ended = time.perf_counter()
        seconds = (ended - started) if protection.limits.count_latency else (ended - served)
        protection.finish(ticket, seconds, counted=response.status != 401)
        response.headers.update(protection.headers(ticket.caller))
        return response

    @staticmethod
    def _call(route: Route, request: EmuRequest) -> EmuResponse:
        try:
            return route.service.handle(request)
        except Exception as exc:
            logger.exception("emulated %s failed on %s %s", route.kind, request.method, request.path)
            message = f"The emulator failed: {type(exc).__name__}."
            return EmuResponse.json(500, {"error": {"code": "0x80040216", "message": message}})

    def _read_body(self) -> bytes:
        if "chunked" in str(self.headers.get("Transfer-Encoding", "")).lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        size = int(length)
        if size < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(size)

    def _write(self, response: EmuResponse) -> None:
        self.send_response(response.status)
        for key, value in response.headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        body = b"" if response.status in _NO_BODY else response.body
        if response.status not in _NO_BODY:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)


def _name(fault: Fault | None) -> str | None:
    return fault.kind if fault is not None else None


class HttpsServer:
    """All listening origins of one emulator: bind them, route them, start and stop them together."""

    def __init__(self, ssl_context: ssl.SSLContext, log: RequestLog, faults: FaultInjector) -> None:
        self.ssl_context = ssl_context
        self.log = log
        self.faults = faults
        self._servers: dict[str, _OriginServer] = {}
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = False

    def listen(self, port: int | None = None) -> str:
        """Bind a new origin on 127.0.0.1 (an ephemeral port unless ``port`` is given); returns its origin URL."""
        server = _OriginServer(port or 0, self)
        self._servers[server.origin] = server
        return server.origin

    def route(self, origin: str, route: Route) -> None:
        self._servers[origin].route = route

    @property
    def origins(self) -> list[str]:
        return list(self._servers)

    def start(self) -> None:
        if self._running:
            return
        for origin, server in self._servers.items():
            if server.route is None:
                raise RuntimeError(f"origin {origin} has no service")
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"emulator {origin}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._running = True

    def stop(self) -> None:
        """Stop accepting, close every open connection (keep-alive ones included), release the ports."""
        if self._running:
            # shutdown() waits for the serve loop to notice; ask every origin at once rather than in turn
            stoppers = [threading.Thread(target=server.shutdown, daemon=True) for server in self._servers.values()]
            for stopper in stoppers:
                stopper.start()
            for stopper in stoppers:
                stopper.join()
        for server in self._servers.values():
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._running = False

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)
