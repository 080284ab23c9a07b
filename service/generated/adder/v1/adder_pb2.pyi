from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Edge(_message.Message):
    __slots__ = ("layer", "head", "query", "key")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    layer: int
    head: int
    query: int
    key: int
    def __init__(self, layer: _Optional[int] = ..., head: _Optional[int] = ..., query: _Optional[int] = ..., key: _Optional[int] = ...) -> None: ...

class AddRequest(_message.Message):
    __slots__ = ("a", "b", "model", "trace")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    a: int
    b: int
    model: str
    trace: bool
    def __init__(self, a: _Optional[int] = ..., b: _Optional[int] = ..., model: _Optional[str] = ..., trace: _Optional[bool] = ...) -> None: ...

class AddResponse(_message.Message):
    __slots__ = ("sum", "answer", "model", "model_version", "edges")
    SUM_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    sum: int
    answer: str
    model: str
    model_version: str
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    def __init__(self, sum: _Optional[int] = ..., answer: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ...) -> None: ...

class AddBatchRequest(_message.Message):
    __slots__ = ("a", "b", "model")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    a: _containers.RepeatedScalarFieldContainer[int]
    b: _containers.RepeatedScalarFieldContainer[int]
    model: str
    def __init__(self, a: _Optional[_Iterable[int]] = ..., b: _Optional[_Iterable[int]] = ..., model: _Optional[str] = ...) -> None: ...

class AddBatchResponse(_message.Message):
    __slots__ = ("sums", "answers", "model", "model_version")
    SUMS_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    sums: _containers.RepeatedScalarFieldContainer[int]
    answers: _containers.RepeatedScalarFieldContainer[str]
    model: str
    model_version: str
    def __init__(self, sums: _Optional[_Iterable[int]] = ..., answers: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class GetCircuitRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class CircuitEdge(_message.Message):
    __slots__ = ("edge", "count", "carry_count", "frequency", "necessary")
    EDGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CARRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    NECESSARY_FIELD_NUMBER: _ClassVar[int]
    edge: Edge
    count: int
    carry_count: int
    frequency: float
    necessary: int
    def __init__(self, edge: _Optional[_Union[Edge, _Mapping]] = ..., count: _Optional[int] = ..., carry_count: _Optional[int] = ..., frequency: _Optional[float] = ..., necessary: _Optional[int] = ...) -> None: ...

class EdgeCountStats(_message.Message):
    __slots__ = ("mean", "min", "max", "problems")
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    mean: float
    min: int
    max: int
    problems: int
    def __init__(self, mean: _Optional[float] = ..., min: _Optional[int] = ..., max: _Optional[int] = ..., problems: _Optional[int] = ...) -> None: ...

class Head(_message.Message):
    __slots__ = ("layer", "head")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    layer: int
    head: int
    def __init__(self, layer: _Optional[int] = ..., head: _Optional[int] = ...) -> None: ...

class Accuracy(_message.Message):
    __slots__ = ("correct", "total", "exact_match")
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    EXACT_MATCH_FIELD_NUMBER: _ClassVar[int]
    correct: int
    total: int
    exact_match: float
    def __init__(self, correct: _Optional[int] = ..., total: _Optional[int] = ..., exact_match: _Optional[float] = ...) -> None: ...

class GetCircuitResponse(_message.Message):
    __slots__ = ("model", "model_version", "n_layers", "n_heads", "n_positions", "tokens", "domain_size", "edges", "edges_per_problem", "edges_per_problem_carry", "edges_per_problem_no_carry", "density", "possible_edges_per_problem", "dead_heads", "parameters_total", "parameters_kept", "neurons_kept", "neurons_total", "accuracy", "gate_rule", "sha256", "training")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    N_LAYERS_FIELD_NUMBER: _ClassVar[int]
    N_HEADS_FIELD_NUMBER: _ClassVar[int]
    N_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    EDGES_PER_PROBLEM_FIELD_NUMBER: _ClassVar[int]
    EDGES_PER_PROBLEM_CARRY_FIELD_NUMBER: _ClassVar[int]
    EDGES_PER_PROBLEM_NO_CARRY_FIELD_NUMBER: _ClassVar[int]
    DENSITY_FIELD_NUMBER: _ClassVar[int]
    POSSIBLE_EDGES_PER_PROBLEM_FIELD_NUMBER: _ClassVar[int]
    DEAD_HEADS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_KEPT_FIELD_NUMBER: _ClassVar[int]
    NEURONS_KEPT_FIELD_NUMBER: _ClassVar[int]
    NEURONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    GATE_RULE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    n_layers: int
    n_heads: int
    n_positions: int
    tokens: str
    domain_size: int
    edges: _containers.RepeatedCompositeFieldContainer[CircuitEdge]
    edges_per_problem: EdgeCountStats
    edges_per_problem_carry: EdgeCountStats
    edges_per_problem_no_carry: EdgeCountStats
    density: float
    possible_edges_per_problem: int
    dead_heads: _containers.RepeatedCompositeFieldContainer[Head]
    parameters_total: int
    parameters_kept: int
    neurons_kept: _containers.RepeatedScalarFieldContainer[int]
    neurons_total: _containers.RepeatedScalarFieldContainer[int]
    accuracy: Accuracy
    gate_rule: str
    sha256: str
    training: _struct_pb2.Struct
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., n_layers: _Optional[int] = ..., n_heads: _Optional[int] = ..., n_positions: _Optional[int] = ..., tokens: _Optional[str] = ..., domain_size: _Optional[int] = ..., edges: _Optional[_Iterable[_Union[CircuitEdge, _Mapping]]] = ..., edges_per_problem: _Optional[_Union[EdgeCountStats, _Mapping]] = ..., edges_per_problem_carry: _Optional[_Union[EdgeCountStats, _Mapping]] = ..., edges_per_problem_no_carry: _Optional[_Union[EdgeCountStats, _Mapping]] = ..., density: _Optional[float] = ..., possible_edges_per_problem: _Optional[int] = ..., dead_heads: _Optional[_Iterable[_Union[Head, _Mapping]]] = ..., parameters_total: _Optional[int] = ..., parameters_kept: _Optional[int] = ..., neurons_kept: _Optional[_Iterable[int]] = ..., neurons_total: _Optional[_Iterable[int]] = ..., accuracy: _Optional[_Union[Accuracy, _Mapping]] = ..., gate_rule: _Optional[str] = ..., sha256: _Optional[str] = ..., training: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("name", "version", "ready", "state", "reason", "size_bytes", "sha256", "parameters_total", "parameters_kept", "circuit_edges", "density", "self_test_correct")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_KEPT_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_EDGES_FIELD_NUMBER: _ClassVar[int]
    DENSITY_FIELD_NUMBER: _ClassVar[int]
    SELF_TEST_CORRECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    ready: bool
    state: str
    reason: str
    size_bytes: int
    sha256: str
    parameters_total: int
    parameters_kept: int
    circuit_edges: int
    density: float
    self_test_correct: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., ready: _Optional[bool] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., parameters_total: _Optional[int] = ..., parameters_kept: _Optional[int] = ..., circuit_edges: _Optional[int] = ..., density: _Optional[float] = ..., self_test_correct: _Optional[int] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("a", "b", "model")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    a: int
    b: int
    model: str
    def __init__(self, a: _Optional[int] = ..., b: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class EdgeAblation(_message.Message):
    __slots__ = ("edge", "necessary", "sum_without", "answer_without", "changed_digit")
    EDGE_FIELD_NUMBER: _ClassVar[int]
    NECESSARY_FIELD_NUMBER: _ClassVar[int]
    SUM_WITHOUT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_WITHOUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_DIGIT_FIELD_NUMBER: _ClassVar[int]
    edge: Edge
    necessary: bool
    sum_without: int
    answer_without: str
    changed_digit: int
    def __init__(self, edge: _Optional[_Union[Edge, _Mapping]] = ..., necessary: _Optional[bool] = ..., sum_without: _Optional[int] = ..., answer_without: _Optional[str] = ..., changed_digit: _Optional[int] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("sum", "answer", "model", "model_version", "edges", "necessary_only_sum", "necessary_only_answer", "necessary_only_right")
    SUM_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    NECESSARY_ONLY_SUM_FIELD_NUMBER: _ClassVar[int]
    NECESSARY_ONLY_ANSWER_FIELD_NUMBER: _ClassVar[int]
    NECESSARY_ONLY_RIGHT_FIELD_NUMBER: _ClassVar[int]
    sum: int
    answer: str
    model: str
    model_version: str
    edges: _containers.RepeatedCompositeFieldContainer[EdgeAblation]
    necessary_only_sum: int
    necessary_only_answer: str
    necessary_only_right: bool
    def __init__(self, sum: _Optional[int] = ..., answer: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., edges: _Optional[_Iterable[_Union[EdgeAblation, _Mapping]]] = ..., necessary_only_sum: _Optional[int] = ..., necessary_only_answer: _Optional[str] = ..., necessary_only_right: _Optional[bool] = ...) -> None: ...
