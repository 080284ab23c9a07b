"""circuit.json: the attention edges, heads and neurons a build uses over the whole domain, typed.

export/circuit.py extracts it from a model; the service reads it (GetCircuit, edge columns, metrics).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.schema import dumps, from_data, read, write


@dataclass(frozen=True)
class Edge:
    layer: int
    head: int
    query: int
    key: int
    count: int  # problems (of the domain) on which the edge is active ("fires")
    carry_count: int  # of which have a carry
    # Sparse build, from the export's ablation table (export/ablation.py); absent elsewhere:
    necessary: int | None = None  # problems whose answer changes when this edge alone is closed
    changes_digit: list[int] | None = None  # per answer digit (most significant first): problems it changes


@dataclass(frozen=True)
class EdgeStats:
    """Active edges per problem over a set of problems."""
    mean: float
    min: int
    max: int
    problems: int


@dataclass(frozen=True)
class EdgesPerProblem(EdgeStats):
    """Over the whole domain, and split by carry / no carry."""
    carry: EdgeStats
    no_carry: EdgeStats


@dataclass(frozen=True)
class NecessaryPerProblem(EdgesPerProblem):
    """Edges whose closing alone changes the answer, per problem."""
    only_these_open_right: int  # problems still answered right with only their necessary edges open


@dataclass(frozen=True)
class SufficientPerProblem(EdgesPerProblem):
    """A set of edges that alone keeps the answer right, per problem."""
    method: str  # how the set was found


@dataclass(frozen=True)
class Circuit:
    model: str
    n_layers: int
    n_heads: int
    n_positions: int
    tokens: str
    gate_rule: str
    domain_size: int
    possible_edges_per_problem: int
    edges: list[Edge]  # the union over the domain, sorted by (layer, head, query, key); the `edges` output's columns
    edges_per_problem: EdgesPerProblem
    density: float  # mean over problems of active / possible edges
    dead_heads: list[list[int]]  # [layer, head] never active
    dead_query_rows: list[list[int]]  # [layer, head, query] never active
    neurons_kept: list[int]
    neurons_total: list[int]
    neuron_masks: list[list[int]]  # kept neuron indices per layer
    live_positions: list[list[int]]  # [layer, position] whose residual input some live path reads
    # Sparse build, from the export's ablation table (export/ablation.py); absent elsewhere:
    necessary_per_problem: NecessaryPerProblem | None = None
    sufficient_per_problem: SufficientPerProblem | None = None
    ablation: dict[str, Any] | None = None  # how the table was made and checked

    def to_json(self) -> str:
        return dumps(self)

    @classmethod
    def from_json(cls, text: str) -> "Circuit":
        return from_data(cls, json.loads(text), "circuit.json")

    def save(self, path: Path) -> None:
        write(self, path)

    def edge_set(self) -> set[tuple[int, int, int, int]]:
        return {(e.layer, e.head, e.query, e.key) for e in self.edges}

    def edge_tuples(self) -> list[tuple[int, int, int, int]]:
        """(layer, head, query, key) in the column order of the `edges` output."""
        return [(e.layer, e.head, e.query, e.key) for e in self.edges]

    def live_rows(self, layer: int) -> set[int]:
        """Query positions with any live edge at this layer."""
        return {e.query for e in self.edges if e.layer == layer}

    def live_heads(self, layer: int) -> list[int]:
        return sorted({e.head for e in self.edges if e.layer == layer})


def read_circuit(path: Path) -> Circuit:
    return read(Circuit, path)
