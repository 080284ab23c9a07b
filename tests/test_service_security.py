"""Security: gRPC over TLS and mutual TLS (certificates made on the fly), the CLI over TLS, /metrics on its
own address, and no request data or secrets in the log.
"""

import contextlib
import logging
import socket
import urllib.request

import grpc
import pytest

from fixtures.certificates import CertificateAuthority
from fixtures.fakes import HANG_S
from fixtures.service_servers import Stubs, connect, running_server
from fixtures.service_servers import test_config as server_config
from service import cli
from service.config import parse_args
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.generated.inference import grpc_predict_v2_pb2_grpc
from service.logs import JsonFormatter
from service.server import create_server
from service.tls import channel_credentials


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, rogue = CertificateAuthority(folder, "adder-test-ca"), CertificateAuthority(folder, "rogue-ca")
    return {"ca": ca.cert, "server": ca.server(), "client": ca.client(), "rogue_client": rogue.client("rogue-client"),
            "rogue_ca": rogue.cert}


@contextlib.contextmanager
def tls_connect(port: int, ca="", client=None):
    credentials = channel_credentials(str(ca), str(client.cert) if client else "", str(client.key) if client else "")
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        yield adder_pb2_grpc.AdderStub(channel)


def refused(stub) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Add(adder_pb2.AddRequest(a=1, b=2), timeout=HANG_S)
    return caught.value.code()


def cli_add(capsys, port, *tls_flags):
    code = cli.main(["add", "36", "28", "--target", f"127.0.0.1:{port}", "--timeout", str(HANG_S), *map(str, tls_flags)])
    return code, capsys.readouterr().out


def test_tls_only(fixture_repository, pki, capsys):
    server_pair = pki["server"]
    with running_server(fixture_repository, tls_cert=str(server_pair.cert), tls_key=str(server_pair.key)) as server:
        with tls_connect(server.port, ca=pki["ca"]) as stub:
            assert stub.Add(adder_pb2.AddRequest(a=36, b=28), timeout=HANG_S).sum == 64
        with connect(server.port) as plaintext:
            assert refused(plaintext.adder) == grpc.StatusCode.UNAVAILABLE
        with tls_connect(server.port, ca=pki["rogue_ca"]) as untrusting:  # the server's CA is not trusted
            assert refused(untrusting) == grpc.StatusCode.UNAVAILABLE
        assert cli_add(capsys, server.port, "--tls-ca", pki["ca"]) == (0, "64\n")


def test_mutual_tls_requires_a_client_certificate_from_the_ca(fixture_repository, pki, capsys):
    server_pair, client = pki["server"], pki["client"]
    with running_server(fixture_repository, tls_cert=str(server_pair.cert), tls_key=str(server_pair.key),
                        tls_client_ca=str(pki["ca"])) as server:
        with tls_connect(server.port, ca=pki["ca"], client=client) as stub:
            assert stub.Add(adder_pb2.AddRequest(a=36, b=28), timeout=HANG_S).sum == 64
        with tls_connect(server.port, ca=pki["ca"]) as anonymous:
            assert refused(anonymous) == grpc.StatusCode.UNAVAILABLE
        with tls_connect(server.port, ca=pki["ca"], client=pki["rogue_client"]) as rogue:
            assert refused(rogue) == grpc.StatusCode.UNAVAILABLE
        assert cli_add(capsys, server.port, "--tls-ca", pki["ca"], "--tls-cert", client.cert,
                       "--tls-key", client.key) == (0, "64\n")
        assert cli_add(capsys, server.port, "--tls-ca", pki["ca"])[0] == 1


@pytest.mark.parametrize("environ, message", [
    ({"ADDER_TLS_CERT": "server.crt"}, "tls_cert and tls_key go together: set both or neither"),
    ({"ADDER_TLS_CLIENT_CA": "ca.crt"}, r"tls_client_ca \(mutual TLS\) needs tls_cert and tls_key"),
])
def test_tls_settings_are_checked_at_start_up(environ, message):
    with pytest.raises(SystemExit, match=message):
        parse_args([], environ=environ)


def test_unreadable_or_non_pem_tls_files_stop_the_server(fixture_repository, pki, tmp_path):
    not_pem = tmp_path / "server.crt"
    not_pem.write_text("hello")
    with pytest.raises(OSError, match="is not a PEM file"):
        create_server(server_config(fixture_repository, tls_cert=str(not_pem), tls_key=str(pki["server"].key)))
    with pytest.raises(FileNotFoundError):
        create_server(server_config(fixture_repository, tls_cert=str(pki["server"].cert), tls_key=str(tmp_path / "no")))


def _can_bind(host: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
    return True


@pytest.mark.skipif(not _can_bind("127.0.0.2"), reason="127.0.0.2 is not a loopback address here")
def test_metrics_listen_on_their_own_address(fixture_repository):
    with running_server(fixture_repository, load=False, metrics_host="127.0.0.2") as server:
        with urllib.request.urlopen(f"http://127.0.0.2:{server.metrics_port}/metrics", timeout=HANG_S) as response:
            assert b"adder_inflight_requests" in response.read()
        with pytest.raises(OSError):  # not on the gRPC address
            urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=HANG_S)


# Distinctive values a client sends; none may reach the log.
SECRETS = {"model": "model-SECRET-3b7f1e", "a": 918273645, "b": 827364519, "id": "id-SECRET-77aa1c",
           "tensor": "tensor-SECRET-5d2e", "token": "tok-SECRET-9c1d", "raw": b"\xffSECRET-RAW-4f4f"}


def _send_distinctive_requests(stubs: Stubs):
    metadata = (("authorization", f"Bearer {SECRETS['token']}"), ("x-api-key", SECRETS["token"]))

    def call(method, request):
        try:
            method(request, timeout=HANG_S, metadata=metadata)
        except grpc.RpcError as error:
            assert error.code() != grpc.StatusCode.INTERNAL

    call(stubs.adder.Add, adder_pb2.AddRequest(a=SECRETS["a"], b=1))
    call(stubs.adder.Add, adder_pb2.AddRequest(a=1, b=2, model=SECRETS["model"]))
    call(stubs.adder.Add, adder_pb2.AddRequest(a=12, b=34, trace=True))
    call(stubs.adder.AddBatch, adder_pb2.AddBatchRequest(a=[1, 2], b=[3, SECRETS["b"]]))
    call(stubs.adder.GetCircuit, adder_pb2.GetCircuitRequest(model=SECRETS["model"]))
    call(stubs.adder.ListModels, adder_pb2.ListModelsRequest())
    inference = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(stubs.channel)
    request = pb.ModelInferRequest(model_name="adder-sparse", id=SECRETS["id"])
    request.inputs.add(name=SECRETS["tensor"], datatype="INT64", shape=[1]).contents.int64_contents.append(SECRETS["a"])
    call(inference.ModelInfer, request)
    request = pb.ModelInferRequest(model_name="adder-sparse", id=SECRETS["id"])
    for name in ("a", "b"):
        request.inputs.add(name=name, datatype="INT64", shape=[1]).contents.int64_contents.append(SECRETS["b"])
    call(inference.ModelInfer, request)
    call(stubs.channel.unary_unary("/adder.v1.Adder/Add"), SECRETS["raw"])


def test_no_request_data_or_secrets_in_the_log(fixture_repository, pki, caplog):
    caplog.set_level(logging.DEBUG)
    server_pair = pki["server"]
    with running_server(fixture_repository) as server, connect(server.port) as stubs:
        _send_distinctive_requests(stubs)
        stubs.adder.Add(adder_pb2.AddRequest(a=36, b=28), timeout=HANG_S)
    with running_server(fixture_repository, load=False, tls_cert=str(server_pair.cert), tls_key=str(server_pair.key)):
        pass
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record) for record in caplog.records)
    assert "request failed" in text and "INVALID_ARGUMENT" in text  # the failures are logged, without their data
    key_body = server_pair.key.read_text().splitlines()[1]
    for value in (*SECRETS.values(), key_body):
        needle = value.decode(errors="ignore").strip("\ufffd") if isinstance(value, bytes) else str(value)
        assert needle not in text, f"{needle!r} is in the log"


def test_cli_tls_certificate_needs_its_key():
    with pytest.raises(SystemExit, match="--tls-cert and --tls-key go together"):
        cli.main(["add", "1", "2", "--target", "127.0.0.1:1", "--tls-cert", "client.crt"])
