"""adder.v1.Adder: thin handlers that validate, delegate to the model registry and build responses."""

from google.protobuf import struct_pb2

from service.config import Config
from service.errors import rpc
from service.explain import explain_problem
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.metrics import Metrics
from service.models import ModelRegistry, ServedModel
from service.runtime import active_edges, answer_text
from service.validation import operand_arrays, operand_pair


def _model_field(request) -> str:
    return request.model


class AdderServicer(adder_pb2_grpc.AdderServicer):
    def __init__(self, config: Config, models: ModelRegistry, metrics: Metrics):
        self.config = config
        self.models = models
        self.metrics = metrics

    def label_model(self, name: str) -> str:
        return self.models.label(name)

    @rpc("Add", _model_field)
    def Add(self, request, context):
        model = self.models.get(request.model)
        a, b = operand_pair(request.a, request.b)
        answers = self.models.infer(model, a, b, context.time_remaining(), context.add_callback)
        response = adder_pb2.AddResponse(sum=int(answers.sums[0]), answer=answer_text(answers.digits[0]),
                                         model=model.name, model_version=model.version)
        if request.trace:
            for layer, head, query, key in active_edges(answers, 0, list(model.edges)):
                response.edges.add(layer=layer, head=head, query=query, key=key)
        return response

    @rpc("AddBatch", _model_field)
    def AddBatch(self, request, context):
        model = self.models.get(request.model)
        a, b = operand_arrays(request.a, request.b, self.config.max_request_batch)
        answers = self.models.infer(model, a, b, context.time_remaining(), context.add_callback)
        return adder_pb2.AddBatchResponse(
            sums=answers.sums.tolist(), answers=[answer_text(d) for d in answers.digits],
            model=model.name, model_version=model.version)

    @rpc("Explain", _model_field)
    def Explain(self, request, context):
        model = self.models.get(request.model)
        operand_pair(request.a, request.b)
        found = explain_problem(model, request.a, request.b, context.time_remaining, context.add_callback)
        response = adder_pb2.ExplainResponse(
            sum=found.sum, answer=found.answer, model=found.model, model_version=found.model_version,
            necessary_only_sum=found.necessary_only_sum, necessary_only_answer=found.necessary_only_answer,
            necessary_only_right=found.necessary_only_right)
        for x in found.edges:
            layer, head, query, key = x.edge
            response.edges.add(edge=adder_pb2.Edge(layer=layer, head=head, query=query, key=key),
                               necessary=x.necessary, sum_without=x.sum_without, answer_without=x.answer_without,
                               changed_digit=x.changed_digit)
        return response

    @rpc("GetCircuit", _model_field)
    def GetCircuit(self, request, context):
        return circuit_response(self.models.get(request.model))

    @rpc("ListModels")
    def ListModels(self, request, context):
        return adder_pb2.ListModelsResponse(models=[model_status(m) for m in self.models.models.values()])


def model_status(model: ServedModel) -> adder_pb2.ModelStatus:
    status = adder_pb2.ModelStatus(name=model.name, version=model.version, ready=model.ready, state=model.state,
                                   reason=model.reason, self_test_correct=model.self_test_correct)
    if model.files is not None:
        manifest = model.files.manifest
        status.size_bytes = model.files.size_bytes
        status.sha256 = model.files.sha256
        status.parameters_total = manifest.get("parameters", {}).get("total", 0)
        status.parameters_kept = manifest.get("parameters", {}).get("kept", 0)
        status.circuit_edges = len(model.files.circuit.get("edges", []))
        status.density = manifest.get("edges", {}).get("density", model.files.circuit.get("density", 0.0))
    return status


def _stats(values: dict) -> adder_pb2.EdgeCountStats:
    return adder_pb2.EdgeCountStats(mean=values.get("mean", 0.0), min=values.get("min", 0), max=values.get("max", 0),
                                    problems=values.get("problems", 0))


def circuit_response(model: ServedModel) -> adder_pb2.GetCircuitResponse:
    """The circuit metadata of a ready model, from its circuit.json and manifest.json."""
    circuit, manifest = model.files.circuit, model.files.manifest
    domain = circuit.get("domain_size", 10_000)
    per_problem = dict(circuit.get("edges_per_problem", {}))
    per_problem.setdefault("problems", domain)
    response = adder_pb2.GetCircuitResponse(
        model=model.name, model_version=model.version, n_layers=circuit.get("n_layers", 0),
        n_heads=circuit.get("n_heads", 0), n_positions=circuit.get("n_positions", 0),
        tokens=circuit.get("tokens", ""), domain_size=domain,
        edges_per_problem=_stats(per_problem),
        edges_per_problem_carry=_stats(per_problem.get("carry", {})),
        edges_per_problem_no_carry=_stats(per_problem.get("no_carry", {})),
        density=circuit.get("density", 0.0),
        possible_edges_per_problem=circuit.get("possible_edges_per_problem", 0),
        parameters_total=manifest.get("parameters", {}).get("total", 0),
        parameters_kept=manifest.get("parameters", {}).get("kept", 0),
        neurons_kept=circuit.get("neurons_kept", manifest.get("neurons", {}).get("kept", [])),
        neurons_total=circuit.get("neurons_total", manifest.get("neurons", {}).get("total", [])),
        gate_rule=circuit.get("gate_rule", manifest.get("gate_rule", "")), sha256=model.files.sha256)
    for edge in circuit.get("edges", []):
        response.edges.add(
            edge=adder_pb2.Edge(layer=edge["layer"], head=edge["head"], query=edge["query"], key=edge["key"]),
            count=edge.get("count", 0), carry_count=edge.get("carry_count", 0),
            frequency=edge.get("count", 0) / domain if domain else 0.0, necessary=edge.get("necessary", 0))
    for layer, head in circuit.get("dead_heads", []):
        response.dead_heads.add(layer=layer, head=head)
    accuracy = manifest.get("accuracy", {})
    response.accuracy.CopyFrom(adder_pb2.Accuracy(correct=accuracy.get("correct", 0), total=accuracy.get("total", 0),
                                                  exact_match=accuracy.get("exact_match", 0.0)))
    training = struct_pb2.Struct()
    training.update({"seed": manifest.get("seed"), "training": manifest.get("training", {}),
                     "config": manifest.get("config", {}), "versions": manifest.get("versions", {})})
    response.training.CopyFrom(training)
    return response
