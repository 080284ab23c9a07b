"""KServe v2 REST driven by the real tritonclient[http]: binary tensors (its default) and JSON, both ways.

In this process: tritonclient.http does not load tritonclient.grpc's compiled proto, so it does not
clash with ours (serving-notes.md).
"""

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from contract.domain import has_carry
from fixtures.service_repository import SPARSE_EDGES
from fixtures.service_servers import running_server

A = np.array([36, 0, 99, 50, 7, 43], dtype=np.int64)
B = np.array([28, 0, 99, 50, 5, 59], dtype=np.int64)


@pytest.fixture(scope="module")
def client(fixture_repository):
    with running_server(fixture_repository, http_port=0) as server:
        connection = triton.InferenceServerClient(url=f"127.0.0.1:{server.http_port}")
        yield connection
        connection.close()


def inputs(a=A, b=B, binary=True, datatype="INT64"):
    tensors = [triton.InferInput("a", list(a.shape), datatype), triton.InferInput("b", list(b.shape), datatype)]
    tensors[0].set_data_from_numpy(a, binary_data=binary)
    tensors[1].set_data_from_numpy(b, binary_data=binary)
    return tensors


def expected_edges(a, b):
    carry = has_carry(np.asarray(a), np.asarray(b))
    return np.array([[e[4] if c else e[5] for e in SPARSE_EDGES] for c in carry])


def test_server_and_model_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("adder-sparse") and client.is_model_ready("adder-dense", "1")
    assert not client.is_model_ready("adder-sparse", "7")
    assert client.get_server_metadata()["name"] == "sparse-adder"
    meta = client.get_model_metadata("adder-sparse")
    assert meta["versions"] == ["1"] and [t["name"] for t in meta["inputs"]] == ["a", "b"]
    assert {t["name"]: t["datatype"] for t in meta["outputs"]} == {"sum": "INT64", "digits": "INT64", "edges": "BOOL"}
    config = client.get_model_config("adder-dense")
    assert config["max_batch_size"] == 0 and [i["name"] for i in config["input"]] == ["a", "b"]
    index = {(m["name"], m["state"]) for m in client.get_model_repository_index()}
    assert index == {("adder-dense", "READY"), ("adder-sparse", "READY")}


def test_binary_in_binary_out(client):
    result = client.infer("adder-sparse", inputs())  # tritonclient's defaults: binary both ways
    assert result.as_numpy("sum").tolist() == (A + B).tolist()
    assert result.as_numpy("digits").tolist() == [[int(d) for d in f"{s:05d}"] for s in A + B]
    assert result.as_numpy("edges").tolist() == expected_edges(A, B).tolist()


def test_json_in_json_out_one_output(client):
    outputs = [triton.InferRequestedOutput("sum", binary_data=False)]
    result = client.infer("adder-dense", inputs(binary=False), outputs=outputs, request_id="r-7")
    assert result.get_response()["id"] == "r-7"
    assert [o["name"] for o in result.get_response()["outputs"]] == ["sum"]
    assert result.get_output("sum")["data"] == (A + B).tolist()  # JSON data, not binary
    assert result.as_numpy("sum").tolist() == (A + B).tolist()


def test_mixed_binary_and_json_inputs_and_outputs(client):
    tensors = inputs()
    tensors[1].set_data_from_numpy(B, binary_data=False)
    outputs = [triton.InferRequestedOutput("digits", binary_data=True),
               triton.InferRequestedOutput("edges", binary_data=False)]
    result = client.infer("adder-sparse", tensors, outputs=outputs, model_version="1")
    assert result.as_numpy("digits")[-1].tolist() == [0, 0, 1, 0, 2]
    assert result.get_output("edges")["data"] == expected_edges(A, B).ravel().tolist()


def test_int32_inputs_are_accepted(client):
    result = client.infer("adder-sparse", inputs(A.astype(np.int32), B.astype(np.int32), datatype="INT32"))
    assert result.as_numpy("sum").tolist() == (A + B).tolist()


@pytest.mark.parametrize("binary", [True, False])
def test_errors_carry_grpcs_messages_and_http_codes(client, binary):
    with pytest.raises(InferenceServerException) as error:
        client.infer("adder-sparse", inputs(np.array([120], dtype=np.int64), np.array([1], dtype=np.int64), binary))
    assert error.value.status() == "400"
    assert error.value.message() == "input 'a'[0]=120 is out of range: must be an integer in 0..99"
    with pytest.raises(InferenceServerException) as error:
        client.infer("adder-nope", inputs(binary=binary))
    assert error.value.status() == "404" and "models: adder-dense, adder-sparse" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        client.infer("adder-sparse", inputs(binary=binary), outputs=[triton.InferRequestedOutput("logits")])
    assert error.value.status() == "400" and "has no output 'logits'" in error.value.message()
