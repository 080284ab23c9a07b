"""adder.v1.Adder: thin handlers that validate, delegate to the model registry and build responses."""

from google.protobuf import struct_pb2

from contract.circuit import EdgeStats

from service.config import Config
from service.errors import rpc
from service.explain import explain_problem
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.metrics import Metrics
from service.models import ModelRegistry, ServedModel
from service.rpc_watch import rpc_watch
from service.runtime import answer_text, edges_of_answer
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
        answers = self.models.infer(model, a, b, context.time_remaining(), rpc_watch(context))
        response = adder_pb2.AddResponse(sum=int(answers.sums[0]), answer=answer_text(answers.digits[0]),
                                         model=model.name, model_version=model.version)
        if request.trace:
            for layer, head, query, key in edges_of_answer(answers, 0, list(model.edges)):
                response.edges.add(layer=layer, head=head, query=query, key=key)
        return response

    @rpc("AddBatch", _model_field)
    def AddBatch(self, request, context):
        model = self.models.get(request.model)
        a, b = operand_arrays(request.a, request.b, self.config.max_request_batch)
        answers = self.models.infer(model, a, b, context.time_remaining(), rpc_watch(context))
        return adder_pb2.AddBatchResponse(
            sums=answers.sums.tolist(), answers=[answer_text(d) for d in answers.digits],
            model=model.name, model_version=model.version)

    @rpc("Explain", _model_field)
    def Explain(self, request, context):
        model = self.models.get(request.model)
        operand_pair(request.a, request.b)
        found = explain_problem(model, request.a, request.b, context.time_remaining, rpc_watch(context))
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
        manifest, circuit = model.files.manifest, model.files.circuit
        status.size_bytes = model.files.size_bytes
        status.sha256 = model.files.sha256
        status.parameters_total = manifest.parameters.total
        status.parameters_kept = manifest.parameters.kept
        status.circuit_edges = len(circuit.edges)
        status.density = circuit.density
    return status


def _stats(stats: EdgeStats) -> adder_pb2.EdgeCountStats:
    return adder_pb2.EdgeCountStats(mean=stats.mean, min=stats.min, max=stats.max, problems=stats.problems)


def circuit_response(model: ServedModel) -> adder_pb2.GetCircuitResponse:
    """The circuit metadata of a ready model, from its circuit.json and manifest.json."""
    circuit, manifest = model.files.circuit, model.files.manifest
    domain = circuit.domain_size
    per_problem = circuit.edges_per_problem
    response = adder_pb2.GetCircuitResponse(
        model=model.name, model_version=model.version, n_layers=circuit.n_layers,
        n_heads=circuit.n_heads, n_positions=circuit.n_positions,
        tokens=circuit.tokens, domain_size=domain,
        edges_per_problem=_stats(per_problem),
        edges_per_problem_carry=_stats(per_problem.carry),
        edges_per_problem_no_carry=_stats(per_problem.no_carry),
        density=circuit.density,
        possible_edges_per_problem=circuit.possible_edges_per_problem,
        parameters_total=manifest.parameters.total,
        parameters_kept=manifest.parameters.kept,
        neurons_kept=circuit.neurons_kept,
        neurons_total=circuit.neurons_total,
        gate_rule=circuit.gate_rule, sha256=model.files.sha256)
    for edge in circuit.edges:
        response.edges.add(
            edge=adder_pb2.Edge(layer=edge.layer, head=edge.head, query=edge.query, key=edge.key),
            count=edge.count, carry_count=edge.carry_count,
            frequency=edge.count / domain if domain else 0.0, necessary=edge.necessary or 0)
    for layer, head in circuit.dead_heads:
        response.dead_heads.add(layer=layer, head=head)
    accuracy = manifest.accuracy
    response.accuracy.CopyFrom(adder_pb2.Accuracy(correct=accuracy.correct, total=accuracy.total,
                                                  exact_match=accuracy.exact_match))
    training = struct_pb2.Struct()
    training.update({"seed": manifest.seed, "training": manifest.training,
                     "config": manifest.config, "versions": manifest.versions})
    response.training.CopyFrom(training)
    return response
