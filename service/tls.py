"""TLS and mutual TLS credentials for the gRPC server and its clients, read from PEM files."""

from pathlib import Path

import grpc

from service.config import Config


def _pem(path: str, what: str) -> bytes:
    data = Path(path).read_bytes()  # a missing file is an OSError: the server refuses to start
    if b"-----BEGIN " not in data:
        raise OSError(f"{what} {path} is not a PEM file")
    return data


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    """TLS credentials when tls_cert/tls_key are set (client certificates required with tls_client_ca); else None."""
    if not config.tls_cert:
        return None
    pair = (_pem(config.tls_key, "tls_key"), _pem(config.tls_cert, "tls_cert"))
    client_ca = _pem(config.tls_client_ca, "tls_client_ca") if config.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def channel_credentials(ca: str = "", cert: str = "", key: str = "") -> grpc.ChannelCredentials:
    """Client TLS: trust `ca` (default: the system roots); present `cert`/`key` for mutual TLS."""
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(ca, "CA") if ca else None,
        private_key=_pem(key, "key") if key else None,
        certificate_chain=_pem(cert, "certificate") if cert else None)
