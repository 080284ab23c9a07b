"""KServe v2 REST inference bodies <-> ModelInferRequest/Response: JSON tensors and the binary tensor data
extension (`Inference-Header-Content-Length`: a JSON header, then the raw tensors, in order).

The REST body becomes the very ModelInferRequest a gRPC client would send (every input as raw
little-endian bytes), so the gRPC handler checks names, datatypes, shapes and values with the same
messages; only what REST alone can get wrong (JSON types, `data` vs `shape`, binary sizes) is checked here.
"""

import json
import math
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidArgument, shown
from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.tensors import INPUT_TYPES

HEADER_LENGTH = "inference-header-content-length"
_OUTPUT_DTYPES = {"INT64": np.dtype("<i8"), "BOOL": np.dtype(np.bool_)}


@dataclass(frozen=True)
class InferCall:
    request: pb.ModelInferRequest
    binary_outputs: dict[str, bool]  # output name -> send as binary; "" is the default for unnamed outputs
    timeout: float | None  # seconds, from Triton's `timeout` parameter (microseconds)


def parse(body: bytes, header_length: str | None, model: str, version: str) -> InferCall:
    """The inference request in `body`; `header_length` is the Inference-Header-Content-Length header."""
    if header_length is None:
        header, binary = body, b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            length = -1
        if not 0 <= length <= len(body):
            raise InvalidArgument(f"Inference-Header-Content-Length is {shown(header_length)}: it must be the "
                                  f"JSON header's size in bytes, at most the body's {len(body)}")
        header, binary = body[:length], body[length:]
    try:
        document = json.loads(header)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"the inference request header is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidArgument("the inference request must be a JSON object with \"inputs\"")
    parameters = _object(document.get("parameters", {}), "parameters")
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=_text(document.get("id", ""), "id"))
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidArgument("\"inputs\" must be a list of tensors")
    offset = 0
    for index, tensor in enumerate(inputs):
        offset = _add_input(request, _object(tensor, f"inputs[{index}]"), binary, offset)
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes of binary data follow the last input's "
                              "(the inputs' binary_data_size add up to less)")
    default_binary = parameters.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise InvalidArgument("parameter binary_data_output must be true or false")
    binary_outputs = {"": default_binary}
    outputs = document.get("outputs", [])
    if not isinstance(outputs, list):
        raise InvalidArgument("\"outputs\" must be a list")
    for index, output in enumerate(outputs):
        output = _object(output, f"outputs[{index}]")
        name = _text(output.get("name"), f"outputs[{index}].name")
        wants = _object(output.get("parameters", {}), f"outputs[{index}].parameters").get("binary_data",
                                                                                          default_binary)
        if not isinstance(wants, bool):
            raise InvalidArgument(f"output {name!r} parameter binary_data must be true or false")
        request.outputs.add(name=name)
        binary_outputs[name] = wants
    return InferCall(request, binary_outputs, _timeout(parameters))


def _add_input(request: pb.ModelInferRequest, tensor: dict, binary: bytes, offset: int) -> int:
    name = _text(tensor.get("name"), "an input's name")
    label = f"input {name!r}"
    datatype = _text(tensor.get("datatype", ""), f"{label} datatype")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and
                                              -(2 ** 63) <= d < 2 ** 63 for d in shape):
        raise InvalidArgument(f"{label} shape must be a list of integers, got {shown(json.dumps(shape))}")
    size = _object(tensor.get("parameters", {}), f"{label} parameters").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(binary) - offset:
            raise InvalidArgument(f"{label} binary_data_size is {json.dumps(size)[:40]}, but "
                                  f"{len(binary) - offset} bytes of binary data are left")
        if "data" in tensor:
            raise InvalidArgument(f"{label} has both data and binary_data_size: send one or the other")
        raw, offset = binary[offset:offset + size], offset + size
    else:
        raw = _json_data(label, tensor.get("data"), datatype, shape)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return offset


def _json_data(label: str, data, datatype: str, shape: list[int]) -> bytes:
    """JSON `data` (flat or nested, row-major) as the raw bytes of `datatype`; b"" for a datatype we do not
    take, which the shared check then names."""
    if data is None:
        raise InvalidArgument(f"{label} has neither data nor parameters.binary_data_size")
    try:
        values = np.asarray(data)
    except (ValueError, OverflowError):  # ragged nesting
        raise InvalidArgument(f"{label} data is not a regular (row-major) array") from None
    if values.size and values.dtype.kind not in "iu":
        first = values.ravel()[0]
        raise InvalidArgument(f"{label} data must be integers for {datatype or 'its datatype'}, got "
                              f"{json.dumps(first if not isinstance(first, np.generic) else first.item())[:40]}")
    expected = math.prod(shape) if all(d >= 0 for d in shape) else -1
    if values.size != expected and expected >= 0:
        raise InvalidArgument(f"{label} has {values.size} values in data, shape {shape} needs {expected}")
    if datatype not in INPUT_TYPES:
        return b""
    dtype = INPUT_TYPES[datatype][0]
    flat = values.ravel()
    if flat.size and (flat.min() < np.iinfo(dtype).min or flat.max() > np.iinfo(dtype).max):
        raise InvalidArgument(f"{label} data does not fit {datatype}")
    return flat.astype(dtype).tobytes()


def _timeout(parameters: dict) -> float | None:
    """Triton's request parameter `timeout`, in microseconds (what tritonclient's infer(timeout=) sends)."""
    value = parameters.get("timeout")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidArgument(f"parameter timeout must be a positive integer (microseconds), got {shown(str(value))}")
    return value / 1e6


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string")
    return value


def encode(response: pb.ModelInferResponse, binary_outputs: dict[str, bool]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it (else None)."""
    outputs, blobs = [], []
    for meta, raw in zip(response.outputs, response.raw_output_contents):
        tensor = {"name": meta.name, "datatype": meta.datatype, "shape": list(meta.shape)}
        if binary_outputs.get(meta.name, binary_outputs[""]):
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = np.frombuffer(raw, dtype=_OUTPUT_DTYPES[meta.datatype]).tolist()
        outputs.append(tensor)
    document = {"model_name": response.model_name, "model_version": response.model_version, "outputs": outputs}
    if response.id:
        document["id"] = response.id
    header = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
