"""inference.GRPCInferenceService (KServe v2 / Open Inference Protocol) over the same models."""

from importlib import metadata

from contract import INPUT_A, INPUT_B, OUTPUT_DIGITS, OUTPUT_EDGES, OUTPUT_SUM
from contract.tensors import TensorSpec, tensor_signature
from service.config import Config
from service.errors import FailedPrecondition, InvalidArgument, rpc, shown
from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.generated.inference import grpc_predict_v2_pb2_grpc
from service.metrics import Metrics
from service.models import ModelRegistry, ModelState, ReloadResult, ServedModel
from service.rpc_watch import rpc_watch
from service.tensors import output_tensors, read_inputs
from service.validation import operand_arrays

SERVER_NAME = "sparse-adder"
PLATFORM = "onnxruntime_onnx"
# RepositoryIndex speaks Triton's state words; the reason (and ListModels) says which failure it was.
_TRITON_STATES = {ModelState.FAILED: "UNAVAILABLE", ModelState.UNLOADED: "UNAVAILABLE", "": "UNAVAILABLE"}


def _server_version() -> str:
    try:
        return metadata.version("sparse-adder")
    except metadata.PackageNotFoundError:
        return "0"


class InferenceServicer(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, config: Config, models: ModelRegistry, metrics: Metrics):
        self.config = config
        self.models = models
        self.metrics = metrics
        self.version = _server_version()

    def label_model(self, name: str) -> str:
        return self.models.label(name)

    @rpc("ServerLive")
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @rpc("ServerReady")
    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.models.all_ready and not self.models.draining)

    @rpc("ModelReady", lambda r: r.name)
    def ModelReady(self, request, context):
        model = self.models.lookup(request.name, request.version)
        return pb.ModelReadyResponse(ready=model.ready and not self.models.draining)

    @rpc("ServerMetadata")
    def ServerMetadata(self, request, context):
        # No "statistics": perf_analyzer would then call ModelStatistics, which we do not serve.
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.version,
                                         extensions=["model_configuration", "model_repository"])

    @rpc("ModelMetadata", lambda r: r.name)
    def ModelMetadata(self, request, context):
        model = self.models.lookup(request.name, request.version)
        inputs, outputs = _tensors(model)
        return pb.ModelMetadataResponse(
            name=model.name, versions=[model.version], platform=PLATFORM,
            inputs=[_metadata(t) for t in inputs], outputs=[_metadata(t) for t in outputs])

    @rpc("ModelConfig", lambda r: r.name)
    def ModelConfig(self, request, context):
        model = self.models.lookup(request.name, request.version)
        inputs, outputs = _tensors(model)

        def kind(t: TensorSpec):
            return pb.DataType.Value("TYPE_" + t.datatype)

        # max_batch_size 0: the dims below are full shapes (N first), as a Triton client expects then.
        config = pb.ModelConfig(
            name=model.name, platform=PLATFORM, backend="onnxruntime", max_batch_size=0,
            input=[pb.ModelInput(name=t.name, data_type=kind(t), dims=t.shape) for t in inputs],
            output=[pb.ModelOutput(name=t.name, data_type=kind(t), dims=t.shape) for t in outputs],
            dynamic_batching=pb.ModelDynamicBatching(
                preferred_batch_size=[self.config.max_batch_size],
                max_queue_delay_microseconds=self.config.max_queue_delay_us))
        return pb.ModelConfigResponse(config=config)

    @rpc("ModelInfer", lambda r: r.model_name)
    def ModelInfer(self, request, context):
        if not request.model_name:
            raise InvalidArgument("model_name is required")
        model = self.models.get(request.model_name, request.model_version)
        arrays = read_inputs(request, (INPUT_A, INPUT_B))
        a, b = operand_arrays(arrays[INPUT_A], arrays[INPUT_B], self.config.max_request_batch,
                              names=(f"input {INPUT_A!r}", f"input {INPUT_B!r}"))
        available = model.runtime.output_names
        wanted = [o.name for o in request.outputs] or available
        unknown = [name for name in wanted if name not in available]
        if unknown:
            raise InvalidArgument(f"model {model.name} has no output {shown(unknown[0])}; outputs: {available}")
        answers = self.models.infer(model, a, b, context.time_remaining(), rpc_watch(context))
        values = {OUTPUT_SUM: answers.sums, OUTPUT_DIGITS: answers.digits, OUTPUT_EDGES: answers.edges}
        metas, raws = output_tensors(wanted, values)
        return pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id,
                                     outputs=metas, raw_output_contents=raws)

    @rpc("RepositoryIndex")
    def RepositoryIndex(self, request, context):
        index = pb.RepositoryIndexResponse()
        for name, version, state, reason in self.models.index():
            if not request.ready or state == ModelState.READY:
                index.models.add(name=name, version=version, state=_TRITON_STATES.get(state, state), reason=reason)
        return index

    @rpc("RepositoryModelLoad", lambda r: r.model_name)
    def RepositoryModelLoad(self, request, context):
        """Load the newest version of a model beside the one serving; swap only if it is proven right."""
        self._allow_model_control("RepositoryModelLoad", request.model_name)
        overrides = sorted(k for k in request.parameters if k == "config" or k.startswith("file:"))
        if overrides:
            raise InvalidArgument(f"parameter {overrides[0]!r} is not supported: models load only from the "
                                  "repository, with their manifest and self-test")
        (outcome,) = self.models.reload([request.model_name])
        if outcome.result in (ReloadResult.REFUSED, ReloadResult.FAILED):
            raise FailedPrecondition(f"model {outcome.model} version {outcome.version} not loaded: {outcome.reason}")
        return pb.RepositoryModelLoadResponse()

    @rpc("RepositoryModelUnload", lambda r: r.model_name)
    def RepositoryModelUnload(self, request, context):
        self._allow_model_control("RepositoryModelUnload", request.model_name)
        self.models.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    def _allow_model_control(self, method: str, model_name: str) -> None:
        if self.config.model_control_mode != "explicit":
            raise FailedPrecondition(f"{method} is off: start the server with ADDER_MODEL_CONTROL_MODE=explicit "
                                     "(or send it SIGHUP to reload the repository)")
        if not model_name:
            raise InvalidArgument("model_name is required")


def _tensors(model: ServedModel) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The manifest's tensors; for a model whose manifest could not be read, the contract's without edges."""
    if model.files is None:
        return tensor_signature(n_edges=0)
    return model.files.manifest.inputs, model.files.manifest.outputs


def _metadata(tensor: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
