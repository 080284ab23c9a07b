"""Bind TCP ports: one server's own, or one its worker processes share (SO_REUSEPORT)."""

import socket


def bind_port(host: str, port: int, what: str, reuse_port: bool = False) -> socket.socket:
    """A socket bound to host:port (port 0: a free one), not listening; a clear OSError if it is taken.

    `reuse_port`: other sockets of this user may bind the same port (worker processes sharing it; the
    kernel spreads new connections over those that listen).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot bind {what} to {host}:{port}: {error.strerror}") from None
    return sock


def reserve_port(host: str, port: int, what: str) -> socket.socket:
    """A socket holding host:port (port 0: a free one) that the workers then bind with SO_REUSEPORT too.

    It never listens, so the kernel gives it no connection. First a plain bind: a port some other
    server holds is an error, not a silent share of its traffic.
    """
    with bind_port(host, port, what) as probe:
        port = probe.getsockname()[1]
    return bind_port(host, port, what, reuse_port=True)
