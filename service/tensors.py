"""KServe v2 tensors <-> numpy: read raw or typed input contents, write raw output contents."""

import numpy as np

from service.errors import InvalidArgument, shown
from service.generated.inference import grpc_predict_v2_pb2 as pb

# Datatypes accepted for the integer inputs: numpy dtype (little-endian) and the typed-contents field.
INPUT_TYPES = {"INT64": (np.dtype("<i8"), "int64_contents"), "INT32": (np.dtype("<i4"), "int_contents")}
OUTPUT_DATATYPES = {np.dtype(np.int64): "INT64", np.dtype(np.bool_): "BOOL"}


def read_inputs(request: pb.ModelInferRequest, expected: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named rank-1 integer inputs as int64 arrays; InvalidArgument says exactly what is wrong."""
    names = [t.name for t in request.inputs]
    if sorted(names) != sorted(expected):
        got = ", ".join(shown(n) for n in names[:len(expected) + 1])
        more = f", ... ({len(names)} inputs)" if len(names) > len(expected) + 1 else ""
        raise InvalidArgument(f"inputs must be exactly {list(expected)}, got [{got}{more}]")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs")
    if raw:
        typed = [t.name for t in request.inputs if t.contents.ByteSize()]  # any value in any typed field
        if typed:
            raise InvalidArgument(f"input {typed[0]!r} has both contents and raw_input_contents: send one or the other")
    arrays = {}
    for index, tensor in enumerate(request.inputs):
        arrays[tensor.name] = _read_input(tensor, raw[index] if raw else None)
    return arrays


def _label(tensor) -> str:
    return f"input {tensor.name!r}"


def _read_input(tensor, raw: bytes | None) -> np.ndarray:
    if tensor.datatype not in INPUT_TYPES:
        datatype = tensor.datatype
        if not datatype:
            datatype = "(empty)"
        elif not (datatype.isalnum() and len(datatype) <= 8):  # not a datatype name: quoted and cut
            datatype = shown(datatype)
        raise InvalidArgument(f"{_label(tensor)} has datatype {datatype}, expected INT64")
    shape = list(tensor.shape)
    if len(shape) != 1 or shape[0] < 0:
        raise InvalidArgument(f"{_label(tensor)} has shape {shape}, expected [N]")
    dtype, field = INPUT_TYPES[tensor.datatype]
    if raw is not None:
        if len(raw) != shape[0] * dtype.itemsize:
            raise InvalidArgument(f"{_label(tensor)} raw contents are {len(raw)} bytes, shape {shape} of "
                                  f"{tensor.datatype} needs {shape[0] * dtype.itemsize}")
        values = np.frombuffer(raw, dtype=dtype)  # a view of the request's bytes: read once, not copied
    else:
        typed = getattr(tensor.contents, field)
        elsewhere = [f.name for f, _ in tensor.contents.ListFields() if f.name != field]
        if elsewhere:
            raise InvalidArgument(f"{_label(tensor)} is {tensor.datatype} but has values in contents.{elsewhere[0]}; "
                                  f"{tensor.datatype} values go in contents.{field}")
        if len(typed) != shape[0]:
            raise InvalidArgument(f"{_label(tensor)} has {len(typed)} values in contents.{field}, shape {shape} needs "
                                  f"{shape[0]}")
        values = np.asarray(typed, dtype=dtype)
    return values if values.dtype == np.int64 else values.astype(np.int64)  # INT64 as it came, INT32 widened


def output_tensors(names: list[str], arrays: dict[str, np.ndarray]) -> tuple[list, list[bytes]]:
    """Metadata and raw bytes of each named output, for ModelInferResponse(outputs=..., raw_output_contents=...)."""
    metas, raws = [], []
    for name in names:
        meta, raw = output_tensor(name, arrays[name])
        metas.append(meta)
        raws.append(raw)
    return metas, raws


def output_tensor(name: str, array: np.ndarray) -> tuple[pb.ModelInferResponse.InferOutputTensor, bytes]:
    """Metadata and the raw little-endian row-major bytes of one output (BOOL is one byte each)."""
    datatype = OUTPUT_DATATYPES[array.dtype]
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    meta = pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=array.shape)
    return meta, array.tobytes()  # row-major (C order) whatever the array's layout
