"""A minimal KServe model serving our ONNX files; run in the kserve venv:

    python -m bench.peers.kserve_model --onnx adder-sparse=PATH [--onnx NAME=PATH ...] \
        --http_port P --grpc_port Q [--intra_op_threads 1] [any other kserve ModelServer flag]

KServe's ModelServer serves the Open Inference Protocol over gRPC (inference.GRPCInferenceService) with
its default settings, except its per-request log lines (latency, "grpc method: ...") are off: our server
logs no successful request either, so no server pays for log I/O per call.
"""

import argparse
import logging

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.numpy_codec import from_np_dtype

from bench.peers.onnx_session import PeerSession


class OnnxAdder(Model):
    """Runs one ONNX Runtime session on the v2 request's inputs; returns the outputs asked for (or all)."""

    def __init__(self, name: str, path: str, intra_op_threads: int):
        super().__init__(name)
        self.path = path
        self.intra_op_threads = intra_op_threads
        self.session: PeerSession | None = None

    def load(self) -> bool:
        self.session = PeerSession(self.path, self.intra_op_threads)
        self.ready = True
        return self.ready

    # Synchronous, as KServe's own examples are: KServe calls it on its event loop.
    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        values = self.session.run({tensor.name: tensor.as_numpy() for tensor in payload.inputs})
        wanted = [o.name for o in payload.request_outputs or []] or list(values)
        outputs = []
        for name in wanted:
            output = InferOutput(name=name, shape=list(values[name].shape), datatype=from_np_dtype(values[name].dtype))
            output.set_data_from_numpy(values[name], binary_data=payload.use_binary_outputs)
            outputs.append(output)
        return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=outputs,
                             use_binary_outputs=payload.use_binary_outputs)


def main() -> None:
    # KServe's own parser as parent: --http_port, --grpc_port etc. mean what they mean to KServe.
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--onnx", action="append", required=True, metavar="NAME=PATH", help="a model to serve")
    parser.add_argument("--intra_op_threads", type=int, default=1)
    args = parser.parse_args()
    models = []
    for item in args.onnx:
        name, _, path = item.partition("=")
        model = OnnxAdder(name, path, args.intra_op_threads)
        model.load()
        models.append(model)
    server = ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=True,
                         enable_latency_logging=False)
    logging.getLogger("kserve").setLevel(logging.WARNING)  # after ModelServer configured it: INFO logs each RPC
    server.start(models)


if __name__ == "__main__":
    main()
