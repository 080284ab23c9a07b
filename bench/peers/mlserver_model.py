"""A minimal MLServer custom runtime serving our ONNX files; loaded by `mlserver start` in the mlserver venv.

model-settings.json names it as `bench.peers.mlserver_model.OnnxAdder`, with parameters.uri = the
model.onnx and parameters.extra.intra_op_threads (see bench/peers/servers.py, which writes the files).
"""

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

from bench.peers.onnx_session import PeerSession


class OnnxAdder(MLModel):
    """Runs one ONNX Runtime session on the v2 request's inputs; returns the outputs asked for (or all)."""

    async def load(self) -> bool:
        extra = self.settings.parameters.extra or {}
        self.session = PeerSession(await get_model_uri(self.settings), int(extra.get("intra_op_threads", 1)))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        values = self.session.run({tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs})
        wanted = [o.name for o in payload.outputs or []] or list(values)
        return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id,
                                 outputs=[_output(name, values[name]) for name in wanted])


def _output(name: str, value):
    output = NumpyCodec.encode_output(name, value)
    # NumpyCodec makes a 1-D array [N, 1] (its "batch dimension"); the graph's sum is [N], as its manifest says.
    output.shape = list(value.shape)
    return output
