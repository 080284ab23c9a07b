"""Compile a model and its Circuit into one ONNX graph that runs the whole greedy decode.

Pure: (model weights, Circuit) in, ModelProto out. The dense build is the same compiler given the
dense circuit (every causal edge), so both builds get the same KV cache and the same folding. What
each layer computes comes from the liveness plan (export/liveness.py): under the served renormalised
rule a row reads only its own circuit edges' keys and values, so the sparse graph computes the
circuit's cone and nothing else:
  * heads without a softmax row at a layer, and layers with no row, are absent;
  * queries only at rows with circuit edges, keys and values only where such a row reads them;
  * a row whose one edge is open on every problem takes that key's value (no query, key or softmax);
  * MLP neurons whose gate is closed are sliced out; a layer's MLP runs only where a later layer or
    an answer reads its output;
  * positions that never read another token become table lookups (see tables.py).
"""

from dataclasses import dataclass

import numpy as np
import onnx

from contract import ANSWER_DIGITS, INPUT_A, INPUT_B, INPUT_EDGE_MASK, OUTPUT_DIGITS, OUTPUT_EDGES, OUTPUT_SUM
from export.circuit import Circuit
from export.compile_attention import AttentionEmitter
from export.compile_parts import Constants, KVCache, as_numpy, select
from export.liveness import LivenessPlan, plan_liveness
from export.model import AdderTransformer
from export.onnx_builder import BOOL, INT64, GraphBuilder, tensor_info
from export.tables import position_tables
from export.task import EQUALS, PLUS, PREDICT_FROM, VOCAB_SIZE

CONSTANT_TOKENS = {2: PLUS, 5: EQUALS}  # prompt positions whose token is the same in every problem
DENSE_RULE = "dense"  # every causal key in every softmax, no gates


class CompileError(ValueError):
    """The model and circuit cannot make a graph (a bug in the plan or a mismatched pair)."""


@dataclass(frozen=True)
class CompiledModel:
    proto: onnx.ModelProto
    n_edges: int  # columns of the `edges` output (0 for the dense build)
    parameters_kept: int  # elements of the model's own weights the graph still holds
    table_elements: int  # elements of precomputed per-(position, token) tables
    plan: LivenessPlan


def build_plan(model: AdderTransformer, circuit: Circuit, gated: bool, closable: bool) -> LivenessPlan:
    """The liveness plan of `circuit` under the model's gate rule (the dense build: every causal key)."""
    always_open = {(e.layer, e.head, e.query, e.key) for e in circuit.edges if e.count == circuit.domain_size}
    return plan_liveness(circuit.edge_tuples(), model.cfg.n_layers, range(PREDICT_FROM, circuit.n_positions),
                         model.cfg.gate_rule if gated else DENSE_RULE, always_open if gated else set(),
                         report_gates=gated, closable=closable)


class _Decoder:
    """Emits the unrolled decode: the prompt's six positions at once, then one position per answer digit."""

    def __init__(self, model: AdderTransformer, circuit: Circuit, gated: bool, closable: bool):
        self.graph = GraphBuilder()
        self.model, self.circuit, self.gated = model, circuit, gated
        self.plan = build_plan(model, circuit, gated, closable)
        self.constants = Constants(self.graph)
        self.cache = KVCache(self.graph, model.cfg.n_layers)
        self.tables = position_tables(model, gated)
        # position -> (N, 1) int64 tensor of its token; "+" and "=" are a zero column plus a constant
        self.zeros, self.tokens = self._prompt_tokens()
        self.attention = AttentionEmitter(self.graph, model, circuit, self.plan, self.constants, self.cache,
                                          gated, closable, self.zeros)
        self.neurons = [np.array(kept, dtype=np.int64) for kept in circuit.neuron_masks]
        self.predictions: dict[int, str] = {}  # predicting position -> (N, 1) int64 next token

    def _prompt_tokens(self) -> tuple[str, dict[int, str]]:
        graph = self.graph
        a = graph.op("Unsqueeze", [INPUT_A, graph.const(np.array([1]))])  # (N, 1)
        b = graph.op("Unsqueeze", [INPUT_B, graph.const(np.array([1]))])
        ten = graph.const(np.array(10, np.int64))
        tens_of_a = graph.op("Div", [a, ten])
        zeros = graph.op("Sub", [tens_of_a, tens_of_a])
        return zeros, {0: tens_of_a, 1: graph.op("Mod", [a, ten]), 2: zeros, 3: graph.op("Div", [b, ten]),
                       4: graph.op("Mod", [b, ten]), 5: zeros}

    def table_index(self, positions: list[int]) -> str:
        """(N, |positions|) int64 rows position * vocab + token of the per-(position, token) tables."""
        columns = [self.tokens[p] for p in positions]
        index = columns[0] if len(columns) == 1 else self.graph.op("Concat", columns, axis=1)
        offsets = np.array([p * VOCAB_SIZE + CONSTANT_TOKENS.get(p, 0) for p in positions], np.int64)
        return self.graph.op("Add", [index, self.graph.const(offsets, "offsets")])

    # ---- positions that read only themselves: lookups -----------------------------------------
    def looked_up(self, positions: list[int]) -> None:
        index = self.table_index(positions)
        for layer in range(len(self.plan.layers)):
            self.attention.looked_up(layer, self.tables, index, positions)
        for p in positions:
            if p >= PREDICT_FROM:
                table = self.constants.table("table.pred", self.tables.predictions)
                self.predictions[p] = self.graph.op("Gather", [table, select(self.graph, index, positions, [p], 1)],
                                                    axis=0)

    # ---- positions computed layer by layer --------------------------------------------------
    def computed(self, positions: list[int]) -> None:
        model, graph = self.model, self.graph
        embedding = as_numpy(model.tok_emb.weight)[None] + as_numpy(model.pos_emb.weight)[:, None]  # (T, V, d)
        folded = self.constants.folded("embedding", embedding.reshape(-1, embedding.shape[-1]),
                                       model.tok_emb.weight.numel() + model.pos_emb.weight.numel())
        index = self.table_index(positions)
        x = graph.op("Gather", [folded, index], axis=0)  # (N, n, d)
        x_positions = list(positions)
        for layer in range(len(self.plan.layers)):
            x, x_positions = self.attention.layer(layer, x, x_positions, self.tables, index)
            if not x_positions:
                return
            x = self.mlp(layer, x, x_positions)
        predicting = [p for p in x_positions if p >= PREDICT_FROM]
        h = self.attention.layer_norm(select(graph, x, x_positions, predicting, 1), model.ln_f, "ln_f")
        logits = graph.op("MatMul", [h, self.constants.weight("unembed", as_numpy(model.unembed.weight).T)])
        next_tokens = graph.op("ArgMax", [logits], axis=-1, keepdims=0)  # (N, |predicting|)
        for p in predicting:
            self.predictions[p] = select(graph, next_tokens, predicting, [p], 1)

    def mlp(self, layer: int, x: str, positions: list[int]) -> str:
        block, keep, graph = self.model.blocks[layer], self.neurons[layer], self.graph
        if len(keep) == 0:
            return x
        weight = self.constants.weight
        h = self.attention.layer_norm(x, block.ln_2, f"ln2.{layer}")
        h = graph.op("MatMul", [h, weight(f"fc.w.{layer}", as_numpy(block.mlp.fc.weight)[keep].T)],
                     node_name=f"layer{layer}.mlp@{','.join(map(str, positions))}")
        h = graph.op("Add", [h, weight(f"fc.b.{layer}", as_numpy(block.mlp.fc.bias)[keep])])
        h = graph.op("Gelu", [h])
        h = graph.op("MatMul", [h, weight(f"proj.w.{layer}", as_numpy(block.mlp.proj.weight)[:, keep].T)])
        h = graph.op("Add", [h, weight(f"proj.b.{layer}", as_numpy(block.mlp.proj.bias))])
        return graph.op("Add", [x, h])

    # ---- the whole decode -------------------------------------------------------------------
    def build(self, opset: int, doc: str, closable: bool) -> CompiledModel:
        n_positions = self.circuit.n_positions
        steps = [list(range(PREDICT_FROM + 1))] + [[p] for p in range(PREDICT_FROM + 1, n_positions)]
        for positions in steps:
            for p in positions:
                self.tokens.setdefault(p, self.predictions.get(p - 1))
            lookups = [p for p in positions if p in self.plan.lookups]
            if lookups:
                self.looked_up(lookups)
            rest = [p for p in positions if p not in self.plan.lookups]
            if rest:
                self.computed(rest)
        outputs = self.answer_outputs(n_positions)
        inputs = [tensor_info(INPUT_A, INT64, ["N"]), tensor_info(INPUT_B, INT64, ["N"])]
        n_edges = len(self.circuit.edges) if self.gated else 0
        if self.gated:
            self.graph.rename(self.attention.gates.output(), OUTPUT_EDGES)
            outputs.append(tensor_info(OUTPUT_EDGES, BOOL, ["N", n_edges]))
        if closable:
            inputs.append(tensor_info(INPUT_EDGE_MASK, BOOL, ["N", n_edges]))
        proto = self.graph.model(inputs, outputs, opset, self.circuit.model, doc)
        return CompiledModel(proto, n_edges, self.constants.parameters_kept, self.constants.table_elements,
                             self.plan)

    def answer_outputs(self, n_positions: int) -> list:
        graph = self.graph
        digits = graph.op("Concat", [self.predictions[p] for p in range(PREDICT_FROM, n_positions)], axis=1)
        graph.rename(digits, OUTPUT_DIGITS)
        place = graph.const(10 ** np.arange(ANSWER_DIGITS - 1, -1, -1, dtype=np.int64))
        total = graph.op("ReduceSum", [graph.op("Mul", [digits, place]), graph.const(np.array([1]))], keepdims=0)
        graph.rename(total, OUTPUT_SUM)
        return [tensor_info(OUTPUT_SUM, INT64, ["N"]), tensor_info(OUTPUT_DIGITS, INT64, ["N", ANSWER_DIGITS])]


def compile_model(model: AdderTransformer, circuit: Circuit, gated: bool, opset: int, doc: str = "",
                  maskable: bool = False) -> CompiledModel:
    """The ONNX build of `model` with everything `circuit` marks dead left out.

    `maskable` (sparse builds): a required input `edge_mask` BOOL [N, E] (columns = circuit edges)
    whose false entries close those gates; all true gives the unmasked graph's answers.
    """
    if maskable and not gated:
        raise CompileError("only a gated build has gates to close")
    return _Decoder(model, circuit, gated, maskable).build(opset, doc, maskable)
