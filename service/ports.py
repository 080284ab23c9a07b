"""Reserve a TCP port for worker processes to share: bound with SO_REUSEPORT, never listening."""

import socket


def reserve_port(host: str, port: int, what: str) -> socket.socket:
    """A socket holding host:port (port 0: a free one) that the workers then bind with SO_REUSEPORT too.

    It never listens, so the kernel gives it no connection. First a plain bind: a port some other
    server holds is an error, not a silent share of its traffic.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = host.strip("[]")
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            raise OSError(f"cannot bind {what} to {host}:{port}: {error.strerror}") from None
        port = probe.getsockname()[1]
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserved.bind((address, port))
    except OSError as error:
        reserved.close()
        raise OSError(f"cannot bind {what} to {host}:{port}: {error.strerror}") from None
    return reserved
