"""inference.GRPCInferenceService (KServe v2): our stubs for raw/typed contents and errors, tritonclient for the wire."""

import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from contract.domain import has_carry
from fixtures.fakes import HANG_S
from fixtures.service_repository import SPARSE_EDGES
from service.generated.inference import grpc_predict_v2_pb2 as pb

A = np.array([36, 12, 99, 0], dtype=np.int64)
B = np.array([28, 3, 99, 0], dtype=np.int64)


def infer_request(model="adder-sparse", a=A, b=B, raw=True, datatype="INT64", outputs=()) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="req-1")
    for name, values in (("a", a), ("b", b)):
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[len(values)])
        if raw:
            request.raw_input_contents.append(np.asarray(values, dtype="<i8" if datatype == "INT64" else "<i4").tobytes())
        elif datatype == "INT64":
            tensor.contents.int64_contents.extend(int(v) for v in values)
        else:
            tensor.contents.int_contents.extend(int(v) for v in values)
    for name in outputs:
        request.outputs.add(name=name)
    return request


def decode(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    dtypes = {"INT64": "<i8", "BOOL": "?"}
    return {meta.name: np.frombuffer(raw, dtype=dtypes[meta.datatype]).reshape(meta.shape)
            for meta, raw in zip(response.outputs, response.raw_output_contents)}


@pytest.mark.parametrize("raw, datatype", [(True, "INT64"), (False, "INT64"), (False, "INT32"), (True, "INT32")])
def test_model_infer_raw_and_typed_contents_answer_raw(stubs, raw, datatype):
    response = stubs.inference.ModelInfer(infer_request(raw=raw, datatype=datatype), timeout=HANG_S)
    assert (response.model_name, response.model_version, response.id) == ("adder-sparse", "1", "req-1")
    out = decode(response)
    assert out["sum"].tolist() == (A + B).tolist()
    assert out["digits"].tolist() == [[int(c) for c in f"{s:05d}"] for s in A + B]
    expected_edges = [[(e[4] if c else e[5]) for e in SPARSE_EDGES] for c in has_carry(A, B)]
    assert out["edges"].tolist() == expected_edges


def test_model_infer_requested_outputs_only(stubs):
    response = stubs.inference.ModelInfer(infer_request(model="adder-dense", outputs=["sum"]), timeout=HANG_S)
    assert [o.name for o in response.outputs] == ["sum"] and decode(response)["sum"].tolist() == (A + B).tolist()


def test_metadata_and_config(stubs):
    meta = stubs.inference.ModelMetadata(pb.ModelMetadataRequest(name="adder-sparse"), timeout=HANG_S)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("a", "INT64", [-1]), ("b", "INT64", [-1])]
    assert [t.name for t in meta.outputs] == ["sum", "digits", "edges"] and list(meta.versions) == ["1"]
    server_meta = stubs.inference.ServerMetadata(pb.ServerMetadataRequest(), timeout=HANG_S)
    assert server_meta.name == "sparse-adder" and "statistics" not in server_meta.extensions
    config = stubs.inference.ModelConfig(pb.ModelConfigRequest(name="adder-dense"), timeout=HANG_S).config
    assert config.platform == "onnxruntime_onnx" and [i.name for i in config.input] == ["a", "b"]
    assert stubs.inference.ModelReady(pb.ModelReadyRequest(name="adder-dense"), timeout=HANG_S).ready


def _error(stubs, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        stubs.inference.ModelInfer(request, timeout=HANG_S)
    return caught.value


def test_model_infer_errors(stubs):
    INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    cases = [
        (infer_request(model="nope"), NOT_FOUND, "model 'nope' not found; models: adder-dense, adder-sparse"),
        (pb.ModelInferRequest(model_name="adder-sparse", model_version="7"), NOT_FOUND,
         "model adder-sparse has no version '7'; versions: 1"),
        (pb.ModelInferRequest(), INVALID, "model_name is required"),
        (infer_request(a=[1, 2], b=[3]), INVALID, "input 'a' and input 'b' must have the same length, got 2 and 1"),
        (infer_request(a=[1, 200], b=[1, 2]), INVALID,
         "input 'a'[1]=200 is out of range: must be an integer in 0..99"),
        (infer_request(datatype="FP32", raw=False), INVALID, "input 'a' has datatype FP32, expected INT64"),
        (infer_request(outputs=["logits"]), INVALID,
         "model adder-sparse has no output 'logits'; outputs: ['sum', 'digits', 'edges']"),
    ]
    short_raw = infer_request()
    short_raw.raw_input_contents[0] = b"\0" * 7
    cases.append((short_raw, INVALID, "input 'a' raw contents are 7 bytes, shape [4] of INT64 needs 32"))
    rank2 = infer_request()
    rank2.inputs[0].shape[:] = [4, 1]
    cases.append((rank2, INVALID, "input 'a' has shape [4, 1], expected [N]"))
    wrong_names = infer_request()
    wrong_names.inputs[1].name = "c"
    cases.append((wrong_names, INVALID, "inputs must be exactly ['a', 'b'], got ['a', 'c']"))
    for request, code, message in cases:
        error = _error(stubs, request)
        assert (error.code(), error.details()) == (code, message)
    assert stubs.status("") == "SERVING"


def test_real_tritonclient_from_a_separate_process(server):
    script = Path(__file__).parent / "fixtures" / "service_triton_client.py"
    result = subprocess.run([sys.executable, str(script), f"127.0.0.1:{server.port}"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["live"] and out["ready"] and out["server"]["name"] == "sparse-adder"
    sums = [64, 0, 198, 100, 12]
    for model, expected_outputs in (("adder-sparse", {"sum", "digits", "edges"}), ("adder-dense", {"sum", "digits"})):
        got = out["models"][model]
        assert got["ready"] and set(got["outputs"]) == expected_outputs
        assert got["outputs"]["sum"] == sums
        assert got["outputs"]["digits"] == [[int(c) for c in f"{s:05d}"] for s in sums]
        assert got["config"]["config"]["name"] == model
    assert len(out["models"]["adder-sparse"]["outputs"]["edges"][0]) == len(SPARSE_EDGES)
    assert out["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "input 'a'[0]=120 is out of range" in out["error"]["message"]
