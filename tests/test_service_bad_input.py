"""Bad input, fuzzed: every RPC gets well-formed messages with bad values and raw bytes that may not decode.

Properties (README "Reliability"): a well-formed message with bad values gets INVALID_ARGUMENT, NOT_FOUND or
RESOURCE_EXHAUSTED with the exact documented message, never INTERNAL or UNKNOWN; bytes that do not decode get
INVALID_ARGUMENT; every OK answer is right (a+b); and after each batch of cases a real Add still answers.
Hypothesis runs derandomized (the same cases on every run, no example database); ADDER_FUZZ_SCALE=10
tries ten times as many. The number of cases tried is printed at the end of the module.
"""

import os
from collections import Counter

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.fakes import HANG_S
from fixtures.service_repository import fixture_active_edges
from fixtures.service_servers import connect, running_server
from service.errors import shown
from service.generated.adder.v1 import adder_pb2
from service.generated.inference import grpc_predict_v2_pb2 as pb

OK, INVALID, NOT_FOUND = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
DOCUMENTED = {OK, INVALID, NOT_FOUND, EXHAUSTED}
MODELS = ("adder-dense", "adder-sparse")
MAX_ROWS = 40  # this module's max_request_batch: oversized requests stay cheap
RANGE = "must be an integer in 0..99"
SCALE = float(os.environ.get("ADDER_FUZZ_SCALE", "1"))
INT64 = st.integers(-2**63, 2**63 - 1)
OPERAND = st.one_of(st.integers(0, 99), st.integers(0, 99), st.integers(-200, 300), INT64)
MODEL_NAME = st.one_of(st.sampled_from(["", *MODELS, "adder", "ADDER-SPARSE", "adder-sparse ", "../adder-sparse"]),
                       st.text(max_size=80))
CASES: Counter = Counter()  # cases tried, by RPC


def fuzz(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def client(fixture_repository, request):
    with running_server(fixture_repository, max_request_batch=MAX_ROWS) as server, connect(server.port) as stubs:
        yield stubs
    total = sum(CASES.values())
    detail = ", ".join(f"{name} {count}" for name, count in sorted(CASES.items()))
    line = f"bad-input fuzz: {total} cases tried ({detail})"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown without -s, in `make test` too
            reporter.write_line(f"\n{line}")
    else:
        print(line)


@pytest.fixture(autouse=True)
def still_answers(client):
    """After each batch of fuzz cases the server still answers a real problem right."""
    yield
    response = client.adder.Add(adder_pb2.AddRequest(a=36, b=28, trace=True), timeout=HANG_S)
    assert (response.sum, response.answer) == (64, "00064")
    assert client.status("") == "SERVING"


def call(name: str, method, request):
    """(code, details, response) of one RPC, counted under `name`.

    Its deadline is only a bound against a hang: thousands of calls run here, and a deadline a loaded
    machine could reach would turn an exact check into DEADLINE_EXCEEDED now and then."""
    CASES[name] += 1
    try:
        return OK, "", method(request, timeout=HANG_S)
    except grpc.RpcError as error:
        return error.code(), error.details(), None


def not_found(model: str) -> str:
    return f"model {shown(model)} not found; models: {', '.join(MODELS)}"


def out_of_range(name: str, values: list[int]) -> str | None:
    """The message for the first value out of 0..99 in `values` (named `name[i]`), or None."""
    bad = [i for i, v in enumerate(values) if not 0 <= v <= 99]
    if not bad:
        return None
    more = f" ({len(bad) - 1} more out of range)" if len(bad) > 1 else ""
    return f"{name}[{bad[0]}]={values[bad[0]]} is out of range: {RANGE}{more}"


# ---- adder.v1, well-formed messages: the exact answer or the exact error --------------------------


def expected_error(a: int, b: int, model: str) -> tuple | None:
    """The (code, details) Add and Explain answer for a bad model or operand, None when both are fine."""
    if (model or "adder-sparse") not in MODELS:
        return NOT_FOUND, not_found(model)
    for name, value in (("a", a), ("b", b)):
        if not 0 <= value <= 99:
            return INVALID, f"{name}={value} is out of range: {RANGE}"
    return None


@fuzz(300)
@given(a=OPERAND, b=OPERAND, model=MODEL_NAME, trace=st.booleans())
def test_add(client, a, b, model, trace):
    code, details, response = call("Add", client.adder.Add, adder_pb2.AddRequest(a=a, b=b, model=model, trace=trace))
    if error := expected_error(a, b, model):
        assert (code, details) == error
    else:
        assert code == OK, details
        assert (response.sum, response.answer, response.model) == (a + b, f"{a + b:05d}", model or "adder-sparse")
        if trace and response.model == "adder-sparse":
            assert [(e.layer, e.head, e.query, e.key) for e in response.edges] == fixture_active_edges(a, b)


@fuzz(200)
@given(a=OPERAND, b=OPERAND, model=MODEL_NAME)
def test_explain(client, a, b, model):
    code, details, response = call("Explain", client.adder.Explain, adder_pb2.ExplainRequest(a=a, b=b, model=model))
    if error := expected_error(a, b, model):
        assert (code, details) == error
    elif model == "adder-dense":  # a valid request the dense build cannot answer
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "dense build" in details
    else:
        assert code == OK, details
        assert (response.sum, response.necessary_only_right) == (a + b, True)
        assert [(x.edge.layer, x.edge.head, x.edge.query, x.edge.key) for x in response.edges] == \
            fixture_active_edges(a, b)


ROWS = st.one_of(st.integers(0, 6), st.integers(0, MAX_ROWS + 3))


@fuzz(300)
@given(data=st.data(), n=ROWS, extra=st.sampled_from([0, 0, 0, 1, -1, 5]), model=MODEL_NAME)
def test_add_batch(client, data, n, extra, model):
    values = st.lists(st.one_of(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), OPERAND),
                      min_size=n, max_size=n)
    a, b = data.draw(values), data.draw(values)
    b = b[:max(0, n + extra)] if extra < 0 else b + [7] * extra
    code, details, response = call("AddBatch", client.adder.AddBatch, adder_pb2.AddBatchRequest(a=a, b=b, model=model))
    if (model or "adder-sparse") not in MODELS:
        assert (code, details) == (NOT_FOUND, not_found(model))
    elif len(a) != len(b):
        assert (code, details) == (INVALID, f"a and b must have the same length, got {len(a)} and {len(b)}")
    elif not a:
        assert (code, details) == (INVALID, "a and b are empty: send at least one problem")
    elif len(a) > MAX_ROWS:
        assert (code, details) == (EXHAUSTED, f"{len(a)} problems in one request, the limit is {MAX_ROWS}")
    elif out_of_range("a", a) or out_of_range("b", b):
        assert (code, details) == (INVALID, out_of_range("a", a) or out_of_range("b", b))
    else:
        assert code == OK, details
        assert list(response.sums) == [x + y for x, y in zip(a, b)]
        assert list(response.answers) == [f"{x + y:05d}" for x, y in zip(a, b)]


@fuzz(100)
@given(model=MODEL_NAME)
def test_get_circuit(client, model):
    code, details, response = call("GetCircuit", client.adder.GetCircuit, adder_pb2.GetCircuitRequest(model=model))
    if (model or "adder-sparse") not in MODELS:
        assert (code, details) == (NOT_FOUND, not_found(model))
    else:
        assert code == OK and response.model == (model or "adder-sparse") and response.domain_size == 10_000


# ---- KServe v2 ModelInfer: a valid request with one thing wrong, and the exact error ---------------


def infer_request(model: str, a: list[int], b: list[int], datatype: str, raw: bool) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="fuzz")
    for name, values in (("a", a), ("b", b)):
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[len(values)])
        if raw:
            request.raw_input_contents.append(np.asarray(values, dtype="<i8" if datatype == "INT64" else "<i4").tobytes())
        else:
            getattr(tensor.contents, "int64_contents" if datatype == "INT64" else "int_contents").extend(values)
    return request


def decoded(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    dtypes = {"INT64": "<i8", "BOOL": "?"}
    return {meta.name: np.frombuffer(raw, dtype=dtypes[meta.datatype]).reshape(meta.shape)
            for meta, raw in zip(response.outputs, response.raw_output_contents)}


def _mutate(data, request: pb.ModelInferRequest, raw: bool, mutation: str) -> tuple[grpc.StatusCode, str]:
    """Apply one `mutation` to a valid request; the code and message the server must answer."""
    tensor = request.inputs[data.draw(st.integers(0, 1))]
    label = f"input {tensor.name!r}"
    n = tensor.shape[0]
    if mutation == "unknown model":
        request.model_name = data.draw(st.text(min_size=1, max_size=60).filter(lambda s: s not in MODELS))
        return NOT_FOUND, not_found(request.model_name)
    if mutation == "unknown version":
        request.model_version = data.draw(st.text(min_size=1, max_size=60).filter(lambda s: s != "1"))
        return NOT_FOUND, f"model {request.model_name} has no version {shown(request.model_version)}; versions: 1"
    if mutation == "no model name":
        request.model_name = ""
        return INVALID, "model_name is required"
    if mutation == "input name":
        tensor.name = data.draw(st.text(max_size=30).filter(lambda s: s not in ("a", "b")))
        got = ", ".join(shown(t.name) for t in request.inputs)
        return INVALID, f"inputs must be exactly ['a', 'b'], got [{got}]"
    if mutation == "input missing":
        del request.inputs[1]
        if raw:
            del request.raw_input_contents[1]
        return INVALID, "inputs must be exactly ['a', 'b'], got ['a']"
    if mutation == "datatype":
        tensor.datatype = data.draw(st.sampled_from(["FP32", "FP64", "BOOL", "UINT64", "INT8", "BYTES", "int64", "", " ",
                                                     "INT64 ", "x" * 50]))
        shown_type = ("(empty)" if not tensor.datatype else tensor.datatype if tensor.datatype.isalnum()
                      and len(tensor.datatype) <= 8 else shown(tensor.datatype))
        return INVALID, f"{label} has datatype {shown_type}, expected INT64"
    if mutation == "shape":
        shape = data.draw(st.one_of(st.lists(st.integers(-3, 8), max_size=3).filter(lambda s: len(s) != 1),
                                    st.lists(st.integers(-2**63, -1), min_size=1, max_size=1)))
        tensor.shape[:] = shape
        return INVALID, f"{label} has shape {shape}, expected [N]"
    if mutation == "length":
        wrong = data.draw(st.integers(0, 2**40).filter(lambda m: m != n))
        tensor.shape[:] = [wrong]
        if raw:
            size = 8 if tensor.datatype == "INT64" else 4
            return INVALID, (f"{label} raw contents are {n * size} bytes, shape [{wrong}] of {tensor.datatype} "
                             f"needs {wrong * size}")
        field = "int64_contents" if tensor.datatype == "INT64" else "int_contents"
        return INVALID, f"{label} has {n} values in contents.{field}, shape [{wrong}] needs {wrong}"
    if mutation == "raw and typed":
        if not raw:
            request.raw_input_contents.extend([b"\0" * 8 * n, b"\0" * 8 * n])
        tensor = request.inputs[0]
        tensor.contents.int64_contents.append(1)
        return INVALID, "input 'a' has both contents and raw_input_contents: send one or the other"
    if mutation == "raw count":
        if raw:
            del request.raw_input_contents[1]
            return INVALID, "raw_input_contents has 1 entries for 2 inputs"
        request.raw_input_contents.extend([b"", b"", b""])
        return INVALID, "raw_input_contents has 3 entries for 2 inputs"
    if mutation == "typed field":
        if raw:  # typed contents instead
            values = [request_values(request, 0), request_values(request, 1)]
            del request.raw_input_contents[:]
            for t, v in zip(request.inputs, values):
                getattr(t.contents, "int64_contents" if t.datatype == "INT64" else "int_contents").extend(v)
        field = data.draw(st.sampled_from(["fp32_contents", "uint64_contents", "bool_contents", "bytes_contents",
                                           "int64_contents" if tensor.datatype == "INT32" else "int_contents"]))
        value = {"fp32_contents": 1.5, "bool_contents": True, "bytes_contents": b"1"}.get(field, 1)
        getattr(tensor.contents, field).append(value)
        right = "int64_contents" if tensor.datatype == "INT64" else "int_contents"
        return INVALID, (f"{label} is {tensor.datatype} but has values in contents.{field}; "
                         f"{tensor.datatype} values go in contents.{right}")
    if mutation == "output":
        request.outputs.add(name=data.draw(st.sampled_from(["logits", "", "SUM", "edges"])))
        outputs = ["sum", "digits", "edges"] if request.model_name == "adder-sparse" else ["sum", "digits"]
        if request.outputs[0].name in outputs or n > MAX_ROWS:  # the row limit is checked first
            return OK, ""
        return INVALID, f"model {request.model_name} has no output {request.outputs[0].name!r}; outputs: {outputs}"
    raise AssertionError(mutation)


def request_values(request: pb.ModelInferRequest, index: int) -> list[int]:
    dtype = "<i8" if request.inputs[index].datatype == "INT64" else "<i4"
    return np.frombuffer(request.raw_input_contents[index], dtype=dtype).tolist()


MUTATIONS = ["none", "unknown model", "unknown version", "no model name", "input name", "input missing", "datatype",
             "shape", "length", "raw and typed", "raw count", "typed field", "output", "values"]


@fuzz(500)
@given(data=st.data(), mutation=st.sampled_from(MUTATIONS), model=st.sampled_from(MODELS),
       datatype=st.sampled_from(["INT64", "INT32"]), raw=st.booleans(), n=ROWS.filter(bool))
def test_model_infer(client, data, mutation, model, datatype, raw, n):
    operand = st.integers(0, 99)
    if mutation == "values":  # out of range, negative, int64/int32 extremes, unequal lengths, empty, oversized
        limit = 2**63 - 1 if datatype == "INT64" else 2**31 - 1
        operand = st.one_of(st.integers(0, 99), st.integers(-limit - 1, limit), st.sampled_from([-1, 100, -limit - 1]))
    a = data.draw(st.lists(operand, min_size=n, max_size=n))
    b = data.draw(st.lists(operand, min_size=n, max_size=n))
    if mutation == "values":  # and lengths: unequal, both empty
        a = a[:data.draw(st.integers(0, n))]
        b = data.draw(st.sampled_from([a, b, [], b[:n // 2]]))
    request = infer_request(model, a, b, datatype, raw)
    if mutation == "values":
        if len(a) != len(b):
            expected = (INVALID, f"input 'a' and input 'b' must have the same length, got {len(a)} and {len(b)}")
        elif not a:
            expected = (INVALID, "input 'a' and input 'b' are empty: send at least one problem")
        elif len(a) > MAX_ROWS:
            expected = (EXHAUSTED, f"{len(a)} problems in one request, the limit is {MAX_ROWS}")
        else:
            bad = out_of_range("input 'a'", a) or out_of_range("input 'b'", b)
            expected = (INVALID, bad) if bad else (OK, "")
    elif mutation == "none":
        expected = (OK, "")
    else:
        expected = _mutate(data, request, raw, mutation)
    code, details, response = call("ModelInfer", client.inference.ModelInfer, request)
    if expected[0] == OK and len(a) > MAX_ROWS:  # an oversized valid request
        expected = (EXHAUSTED, f"{len(a)} problems in one request, the limit is {MAX_ROWS}")
    assert (code, details) == expected
    if code == OK:
        out = decoded(response)
        assert out.get("sum", np.add(a, b)).tolist() == [x + y for x, y in zip(a, b)]
        if "digits" in out:
            assert out["digits"].tolist() == [[int(c) for c in f"{x + y:05d}"] for x, y in zip(a, b)]


# ---- anything that decodes: documented codes only, and every OK answer is right ------------------


def tensor_strategy():
    return st.builds(
        lambda name, datatype, shape, int64s, int32s: pb.ModelInferRequest.InferInputTensor(
            name=name, datatype=datatype, shape=shape,
            contents=pb.InferTensorContents(int64_contents=int64s, int_contents=int32s)),
        st.sampled_from(["a", "b", "c", ""]), st.sampled_from(["INT64", "INT32", "FP32", "BYTES", ""]),
        st.lists(st.one_of(st.integers(-2, 5), INT64), max_size=3), st.lists(INT64, max_size=5),
        st.lists(st.integers(-2**31, 2**31 - 1), max_size=5))


@fuzz(300)
@given(model=st.sampled_from(["", *MODELS, "nope"]), version=st.sampled_from(["", "1", "2"]),
       inputs=st.lists(tensor_strategy(), max_size=3), raw=st.lists(st.binary(max_size=48), max_size=3),
       outputs=st.lists(st.sampled_from(["sum", "digits", "edges", "x"]), max_size=3))
def test_model_infer_anything(client, model, version, inputs, raw, outputs):
    request = pb.ModelInferRequest(model_name=model, model_version=version, inputs=inputs, raw_input_contents=raw,
                                   outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=o) for o in outputs])
    code, details, response = call("ModelInfer", client.inference.ModelInfer, request)
    # the model and version are checked before the tensors, with exact messages; then a tensor's fault
    # is INVALID_ARGUMENT naming what is wrong (at most 5 rows: never over the row limit)
    if not model:
        assert (code, details) == (INVALID, "model_name is required")
    elif model == "nope":
        assert (code, details) == (NOT_FOUND, not_found(model))
    elif version == "2":
        assert (code, details) == (NOT_FOUND, f"model {model} has no version '2'; versions: 1")
    elif code != OK:
        assert code == INVALID and details.startswith(("input", "raw_input_contents ",
                                                       f"model {model} has no output ")), (code, details)
    if code == OK:
        a, b = (np.frombuffer(raw[i], "<i8" if inputs[i].datatype == "INT64" else "<i4") if raw else
                np.asarray(inputs[i].contents.int64_contents or inputs[i].contents.int_contents) for i in (0, 1))
        if inputs[0].name == "b":
            a, b = b, a
        assert decoded(response).get("sum", a + b).tolist() == (a + b).tolist()


# ---- raw bytes to every RPC: undecodable -> INVALID_ARGUMENT; decodable -> documented codes -------

REQUEST_TYPES = {
    "/adder.v1.Adder/Add": adder_pb2.AddRequest,
    "/adder.v1.Adder/AddBatch": adder_pb2.AddBatchRequest,
    "/adder.v1.Adder/GetCircuit": adder_pb2.GetCircuitRequest,
    "/adder.v1.Adder/ListModels": adder_pb2.ListModelsRequest,
    "/adder.v1.Adder/Explain": adder_pb2.ExplainRequest,
    "/inference.GRPCInferenceService/ModelInfer": pb.ModelInferRequest,
}
SEEDS = [adder_pb2.AddRequest(a=36, b=28, model="adder-sparse", trace=True).SerializeToString(),
         adder_pb2.AddBatchRequest(a=[1, 2, 3], b=[4, 5, 6], model="adder-dense").SerializeToString(),
         adder_pb2.ExplainRequest(a=43, b=59, model="adder-sparse").SerializeToString(),
         infer_request("adder-sparse", [36, 12], [28, 3], "INT64", True).SerializeToString(),
         infer_request("adder-dense", [36, 12], [28, 3], "INT32", False).SerializeToString()]


def mutated_seed():
    """A valid request of some RPC, cut short, bit-flipped or spliced: often still decodes, often not."""
    def mutate(seed: bytes, cut: int, flips: list[tuple[int, int]], insert: bytes) -> bytes:
        data = bytearray(seed[:cut] if cut else seed)
        for position, bit in flips:
            if data:
                data[position % len(data)] ^= 1 << bit
        return bytes(data) + insert
    return st.builds(mutate, st.sampled_from(SEEDS), st.integers(0, 60),
                     st.lists(st.tuples(st.integers(0, 200), st.integers(0, 7)), max_size=3), st.binary(max_size=6))


@pytest.mark.parametrize("path", list(REQUEST_TYPES))
@fuzz(120)
@given(data=st.one_of(st.binary(max_size=64), mutated_seed()))
def test_raw_bytes(client, path, data):
    method = path.rsplit("/", 1)[1]
    code, details, response = call(f"{method} (bytes)", client.channel.unary_unary(path), data)
    message_type = REQUEST_TYPES[path]
    try:
        request = message_type.FromString(data)
    except Exception:
        assert (code, details) == (INVALID, f"the request is not a valid {message_type.DESCRIPTOR.full_name} "
                                             "message (it does not decode)")
        return
    documented = DOCUMENTED | ({grpc.StatusCode.FAILED_PRECONDITION} if method == "Explain" else set())  # dense
    assert code in documented and details != "internal error", (code, details)
    if code != OK:
        assert details
    elif method == "Add":
        assert adder_pb2.AddResponse.FromString(response).sum == request.a + request.b
    elif method == "AddBatch":
        assert list(adder_pb2.AddBatchResponse.FromString(response).sums) == [x + y for x, y in zip(request.a, request.b)]
    elif method == "Explain":
        assert adder_pb2.ExplainResponse.FromString(response).sum == request.a + request.b
    elif method == "ListModels":
        assert {m.name for m in adder_pb2.ListModelsResponse.FromString(response).models} == set(MODELS)


def test_long_client_strings_are_cut_in_messages(client):
    """A 100,000-character model name used to overflow grpc's trailer limit ("Stream removed")."""
    name = "x" * 100_000
    code, details, _ = call("Add", client.adder.Add, adder_pb2.AddRequest(a=1, b=1, model=name))
    assert (code, details) == (NOT_FOUND, f"model {'x' * 40!r}... (100,000 characters) not found; "
                                          "models: adder-dense, adder-sparse")
    request = infer_request("adder-sparse", [1], [2], "INT64", True)
    request.inputs.add(name="y" * 5000)
    code, details, _ = call("ModelInfer", client.inference.ModelInfer, request)
    assert (code, details) == (INVALID, f"inputs must be exactly ['a', 'b'], got ['a', 'b', {'y' * 40!r}... "
                                        "(5,000 characters)]")


@pytest.mark.parametrize("datatype, named", [("", "(empty)"), ("FP32", "FP32"), (" ", "' '"),
                                             ("y" * 50, f"{'y' * 40!r}... (50 characters)")])
def test_datatype_is_named_in_the_message(client, datatype, named):
    request = infer_request("adder-sparse", [1], [2], "INT64", False)
    request.inputs[0].datatype = datatype
    code, details, _ = call("ModelInfer", client.inference.ModelInfer, request)
    assert (code, details) == (INVALID, f"input 'a' has datatype {named}, expected INT64")
