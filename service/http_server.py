"""Serve the HTTP app with uvicorn on its own thread and event loop, beside the gRPC server, in one process.

uvicorn on uvloop with the httptools parser is the fastest of the common Python ASGI stacks, and in
the same process the HTTP routes share the gRPC server's models and batcher: concurrent requests from
both protocols coalesce into the same session.run calls.
"""

import asyncio
import logging
import socket
import ssl
import threading
import time

import uvicorn

from service.config import Config
from service.ports import bind_port

try:
    import uvloop
except ImportError:  # not on Windows: the standard loop works, slower
    uvloop = None

log = logging.getLogger(__name__)
# A bound against a hang, not a speed expectation: uvicorn starts in milliseconds on a socket bound already.
_START_TIMEOUT_S = 120.0
# uvicorn's own INFO lines ("Uvicorn running on ...") duplicate the server's "listening" line.
logging.getLogger("uvicorn").setLevel(logging.WARNING)


class HttpEndpoint:
    """Bound at construction (a busy port is an OSError then, as for gRPC); start() serves, stop() drains."""

    def __init__(self, app, config: Config, shared_port: bool = False):
        """`shared_port`: other worker processes listen on the same port (SO_REUSEPORT)."""
        self._socket = _bind(config.host, config.http_port, shared_port)
        self.port = self._socket.getsockname()[1]
        tls = {}  # the same files as gRPC's (service/tls.py has checked them already)
        if config.tls_cert:
            tls = {"ssl_certfile": config.tls_cert, "ssl_keyfile": config.tls_key}
            if config.tls_client_ca:
                tls |= {"ssl_ca_certs": config.tls_client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        self._config = uvicorn.Config(
            app, http="httptools", lifespan="off", access_log=False, log_config=None, server_header=False,
            proxy_headers=False, backlog=2048, timeout_graceful_shutdown=1,
            # Longer than load balancers' idle timeouts (60 s on the common ones): the balancer, not the
            # server, closes an idle connection, so no request races a close. A drain closes idle ones.
            timeout_keep_alive=75, **tls)
        try:
            self._config.load()  # reads the TLS files now: a bad one stops the server from starting
        except BaseException:
            self._socket.close()
            raise
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def tls(self) -> bool:
        return self._config.ssl is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()
        give_up = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"the HTTP server did not start: {self._failure}")
            if time.monotonic() > give_up:
                self._server.should_exit = True
                raise OSError(f"the HTTP server did not start within {_START_TIMEOUT_S:.0f} s")
            self._thread.join(0.01)

    def _run(self) -> None:
        loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        except BaseException as error:  # reported by start() or in the log; the thread must not die silently
            self._failure = error
            log.error("HTTP server stopped", extra={"fields": {"reason": repr(error)}})
        finally:
            loop.close()

    def stop(self, grace: float) -> None:
        """Close the port, finish responses in progress (at most `grace` s), then end the loop."""
        if self._thread is None:
            self._socket.close()
            return
        self._config.timeout_graceful_shutdown = max(grace, 0.1)
        self._server.should_exit = True
        self._thread.join(grace + 5.0)


def _bind(host: str, port: int, shared: bool) -> socket.socket:
    sock = bind_port(host, port, "HTTP", reuse_port=shared)  # shared: the workers' sockets take turns
    sock.setblocking(False)  # uvicorn's event loop listens on it when the server starts
    return sock
