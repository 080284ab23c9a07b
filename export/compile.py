"""Compile a model and its Circuit into one ONNX graph that runs the whole greedy decode.

Pure: (model weights, Circuit) in, ModelProto out. The dense build is the same compiler given the
dense circuit (every causal edge), so both builds get the same KV cache and the same folding; the
sparse build differs only by what its circuit proves structurally zero over all 10,000 problems:
  * heads with no live edge at a layer, and layers with no live head, are absent;
  * query rows are computed only where a live edge or a downstream reader needs them;
  * keys are computed for every causal position of a live row (under the paper's rule the softmax
    denominator is not renormalised, so it needs them all), values and keys nowhere else; under the
    renormalised rule the softmax runs over the open circuit edges only (liveness is still the
    paper's superset: computing only the edge cone is issue #20's next step, docs/liveness-plan.md);
  * MLP neurons whose gate is closed are sliced out; a layer's MLP runs only at positions read later;
  * positions that never read another token become table lookups (see tables.py).
"""

from dataclasses import dataclass

import numpy as np
import onnx

from contract import ANSWER_DIGITS, INPUT_A, INPUT_B, INPUT_EDGE_MASK, OUTPUT_DIGITS, OUTPUT_EDGES, OUTPUT_SUM
from export.circuit import Circuit, live_positions
from export.model import RENORMALISED_RULE, AdderTransformer
from export.onnx_builder import BOOL, INT64, GraphBuilder, tensor_info
from export.tables import position_tables
from export.task import EQUALS, PLUS, PREDICT_FROM, VOCAB_SIZE

NEG_INF = np.float32(-np.inf)


@dataclass(frozen=True)
class CompiledModel:
    proto: onnx.ModelProto
    n_edges: int  # columns of the `edges` output (0 for the dense build)
    parameters_kept: int  # elements of the model's own weights the graph still holds
    table_elements: int  # elements of precomputed per-(position, token) tables


@dataclass(frozen=True)
class Liveness:
    """What each layer must compute, derived from the circuit."""

    heads: list[list[int]]  # live heads per layer
    rows: list[set[int]]  # live query positions per layer
    key_limit: list[int]  # keys needed at positions <= this (max live row; -1: none)
    need_after: list[set[int]]  # positions whose residual is read after each layer
    self_only: set[int]  # positions that never read another token


def liveness(circuit: Circuit, n_layers: int, n_positions: int) -> Liveness:
    heads = [circuit.live_heads(l) for l in range(n_layers)]
    rows = [circuit.live_rows(l) for l in range(n_layers)]
    key_limit = [max(r, default=-1) for r in rows]
    # what layer l + 1 reads is the backward liveness of the paper's rule (every causal key of a live
    # row), a superset of the renormalised rule's edge cone that also computes every reported gate;
    # after the last layer, the predictions
    paper_live = live_positions(n_layers, n_positions, range(PREDICT_FROM, n_positions), rows)
    live_inputs = [{p for layer, p in paper_live if layer == l} for l in range(n_layers)]
    need_after = live_inputs[1:] + [set(range(PREDICT_FROM, n_positions))]
    self_only = {p for p in range(n_positions) if p == 0 or not any(p in r for r in rows)}
    return Liveness(heads, rows, key_limit, need_after, self_only)


def _np(t) -> np.ndarray:
    return t.detach().numpy().astype(np.float32)


class _Decoder:
    """Emits the unrolled decode; one instance per compile (holds the graph being built)."""

    def __init__(self, model: AdderTransformer, circuit: Circuit, gated: bool, maskable: bool = False):
        self.g, self.m, self.gated, self.maskable = GraphBuilder(), model, gated, maskable
        self.L, self.T, self.V = model.cfg.n_layers, circuit.n_positions, VOCAB_SIZE
        self.live = liveness(circuit, self.L, self.T)
        if maskable:
            # position 0's self-edges are folded into its lookup tables, which cannot close a gate:
            # a maskable graph computes position 0 like any other when it has a live edge
            if any(0 in rows for rows in self.live.rows):
                self.live.self_only.discard(0)
        self.union = circuit.edge_set()
        self.edge_index = {(e.layer, e.head, e.query, e.key): i for i, e in enumerate(circuit.edges)}
        self.neurons = [np.array(ix, dtype=np.int64) for ix in circuit.neuron_masks]
        self.kept = 0
        self.table_elements = 0
        self.cache_kt = [None] * self.L  # per layer: (N, Hl, dh, P) keys, transposed
        self.cache_v = [None] * self.L  # per layer: (N, Hl, P, dh)
        self.cache_pos: list[list[int]] = [[] for _ in range(self.L)]
        self.edge_cols: list[tuple[str, list[int]]] = []  # (N, k) bool tensors and their edge ids
        self.tokens: dict[int, tuple[str, int]] = {}  # position -> (tensor (N,1) or "", const)
        self.preds: dict[int, str] = {}
        self._tables = None
        self._weights = {}

    # ---- weights (counted once each) -------------------------------------------------------
    def weight(self, key: str, array: np.ndarray, table: bool = False) -> str:
        if key not in self._weights:
            self._weights[key] = self.g.const(array.astype(array.dtype), key.replace(".", "_"))
            if table:
                self.table_elements += array.size
            else:
                self.kept += array.size
        return self._weights[key]

    def tables(self):
        if self._tables is None:
            self._tables = position_tables(self.m, self.gated)
        return self._tables

    # ---- token indices ---------------------------------------------------------------------
    def table_index(self, positions: list[int]) -> str:
        """(N, |positions|) int64 rows p * V + token."""
        cols, offsets = [], []
        for p in positions:
            name, const = self.tokens[p]
            cols.append(name or self.zeros)
            offsets.append(p * self.V + const)
        idx = cols[0] if len(cols) == 1 else self.g.op("Concat", cols, axis=1)
        return self.g.op("Add", [idx, self.g.const(np.array(offsets, np.int64), "offsets")])

    def select(self, x: str, src: list[int], dst: list[int], axis: int) -> str:
        """Slice the positions `dst` (a subset of `src`, in order) out of axis `axis` of x."""
        if dst == src:
            return x
        return self.g.op("Gather", [x, self.g.const(np.array([src.index(p) for p in dst], np.int64))],
                         axis=axis)

    # ---- building blocks -------------------------------------------------------------------
    def layer_norm(self, x: str, ln, key: str) -> str:
        w = self.weight(f"{key}.w", _np(ln.weight))
        b = self.weight(f"{key}.b", _np(ln.bias))
        return self.g.op("LayerNormalization", [x, w, b], axis=-1, epsilon=ln.eps)

    def head_weights(self, l: int, which: str) -> np.ndarray:
        """(d, Hl*dh) slice of W_Q/W_K/W_V for the live heads; 1/sqrt(dh) folded into W_Q."""
        attn = self.m.blocks[l].attn
        w = _np(getattr(attn, f"W_{which}"))[self.live.heads[l]]  # (Hl, d, dh)
        if which == "Q":
            w = w / np.float32(np.sqrt(attn.d_head))
        return np.concatenate(list(w), axis=1)

    def append_cache(self, l: int, kt: str, v: str, positions: list[int]) -> None:
        if self.cache_kt[l] is None:
            self.cache_kt[l], self.cache_v[l] = kt, v
        else:
            self.cache_kt[l] = self.g.op("Concat", [self.cache_kt[l], kt], axis=3)
            self.cache_v[l] = self.g.op("Concat", [self.cache_v[l], v], axis=2)
        self.cache_pos[l] += positions

    def split_heads(self, x: str, n: int, l: int, transpose_keys: bool = False) -> str:
        """(N, n, Hl*dh) -> (N, Hl, n, dh), or (N, Hl, dh, n) for keys."""
        dh = self.m.blocks[l].attn.d_head
        x = self.g.op("Reshape", [x, self.g.const(np.array([-1, n, len(self.live.heads[l]), dh]))])
        return self.g.op("Transpose", [x], perm=[0, 2, 3, 1] if transpose_keys else [0, 2, 1, 3])

    # ---- positions that read only themselves: lookups -----------------------------------------
    def tabulated(self, positions: list[int]) -> None:
        tables, idx = self.tables(), self.table_index(positions)
        for l in range(self.L):
            kv_pos = [p for p in positions if p <= self.live.key_limit[l]] if self.live.heads[l] else []
            if kv_pos:
                rows = self.select(idx, positions, kv_pos, axis=1)
                kt, v = (self.g.op("Transpose", [self.g.op("Gather", [self.kv_table(l, which), rows], axis=0)],
                                   perm=perm) for which, perm in (("K", [0, 2, 3, 1]), ("V", [0, 2, 1, 3])))
                self.append_cache(l, kt, v, kv_pos)
            if self.gated and 0 in positions:
                ids = [self.edge_index[(l, h, 0, 0)] for h in range(self.m.cfg.n_heads)
                       if (l, h, 0, 0) in self.union]
                if ids:
                    heads = [h for h in range(self.m.cfg.n_heads) if (l, h, 0, 0) in self.union]
                    gates = tables.self_gates[l][:, heads]
                    cols = self.g.op("Gather", [self.weight(f"table.gate.{l}", gates, True),
                                                self.select(idx, positions, [0], axis=1)], axis=0)
                    cols = self.g.op("Reshape", [cols, self.g.const(np.array([0, -1]))])  # (N, k)
                    self.edge_cols.append((cols, ids))
        for p in positions:
            if p >= PREDICT_FROM:
                pred = self.g.op("Gather", [self.weight("table.pred", tables.predictions, True),
                                            self.select(idx, positions, [p], axis=1)], axis=0)
                self.preds[p] = pred

    def kv_table(self, l: int, which: str) -> str:
        """(T*V, Hl, dh) keys or values of every (position, token) that reads only itself."""
        attn = self.m.blocks[l].attn
        dh = attn.d_head
        h = self.tables().attn_inputs[l]  # (T*V, d)
        table = (h @ self.head_weights(l, which)).reshape(len(h), -1, dh)
        return self.weight(f"table.{which}.{l}", table.astype(np.float32), table=True)

    # ---- positions computed layer by layer --------------------------------------------------
    def computed(self, positions: list[int]) -> None:
        emb = _np(self.m.tok_emb.weight)[None] + _np(self.m.pos_emb.weight)[:, None]  # (T, V, d)
        if "embedding" not in self._weights:  # counted as the two embeddings it folds, not T*V rows
            self.kept += self.m.tok_emb.weight.numel() + self.m.pos_emb.weight.numel()
            self.table_elements -= emb.size
        x = self.g.op("Gather", [self.weight("embedding", emb.reshape(self.T * self.V, -1), table=True),
                                 self.table_index(positions)], axis=0)  # (N, n, d)
        xpos = list(positions)
        for l in range(self.L):
            x, xpos = self.attention(l, x, xpos)
            keep = [p for p in xpos if p in self.live.need_after[l]]
            x, xpos = self.select(x, xpos, keep, axis=1), keep
            if not xpos:
                return
            x = self.mlp(l, x)
        out = [p for p in xpos if p >= PREDICT_FROM]
        h = self.layer_norm(self.select(x, xpos, out, axis=1), self.m.ln_f, "ln_f")
        logits = self.g.op("MatMul", [h, self.weight("unembed", _np(self.m.unembed.weight).T)])
        pred = self.g.op("ArgMax", [logits], axis=-1, keepdims=0)  # (N, |out|)
        for i, p in enumerate(out):
            self.preds[p] = self.select(pred, out, [p], axis=1) if len(out) > 1 else pred

    def attention(self, l: int, x: str, xpos: list[int]) -> tuple[str, list[int]]:
        live = self.live
        if not live.heads[l]:
            return x, xpos
        kv_pos = [p for p in xpos if p <= live.key_limit[l]]
        # rows kept: read downstream, or (sparse) carrying a live edge whose gate is reported
        q_pos = [p for p in xpos if p in live.need_after[l] or (self.gated and p in live.rows[l])]
        has_rows = any(p in live.rows[l] for p in q_pos)
        if not kv_pos and not has_rows:
            return x, xpos
        h = self.layer_norm(x, self.m.blocks[l].ln_1, f"ln1.{l}")
        n = len(xpos)
        k = self.g.op("MatMul", [h, self.weight(f"W_K.{l}", self.head_weights(l, "K"))])
        v = self.g.op("MatMul", [h, self.weight(f"W_V.{l}", self.head_weights(l, "V"))])
        if kv_pos:
            kt = self.select(self.split_heads(k, n, l, True), xpos, kv_pos, axis=3)
            self.append_cache(l, kt, self.select(self.split_heads(v, n, l), xpos, kv_pos, axis=2), kv_pos)
        x = self.select(x, xpos, q_pos, axis=1)
        if not has_rows:
            return x, q_pos
        hq = self.select(h, xpos, q_pos, axis=1)
        q = self.g.op("MatMul", [hq, self.weight(f"W_Q.{l}", self.head_weights(l, "Q"))])
        q = self.split_heads(q, len(q_pos), l)  # (N, Hl, nq, dh)
        logits = self.g.op("MatMul", [q, self.cache_kt[l]])  # (N, Hl, nq, P)
        keys = self.cache_pos[l]
        future = np.array([[k > p for k in keys] for p in q_pos])
        if future.any():
            logits_masked = self.g.op("Add", [logits, self.g.const(np.where(future, NEG_INF, 0).astype(np.float32))])
        else:
            logits_masked = logits
        if self.gated:
            open_ = self.gate(l, logits, q_pos, keys)
            if self.m.cfg.gate_rule == RENORMALISED_RULE:  # softmax over the open edges; none open: 0
                logits_masked = self.g.op("Where", [open_, logits, self.g.const(NEG_INF)])
            weights = self.g.op("Softmax", [logits_masked], axis=-1)
            weights = self.g.op("Where", [open_, weights, self.g.const(np.array(0, np.float32))])
        else:
            weights = self.g.op("Softmax", [logits_masked], axis=-1)
        y = self.g.op("MatMul", [weights, self.cache_v[l]])  # (N, Hl, nq, dh)
        y = self.g.op("Transpose", [y], perm=[0, 2, 1, 3])
        y = self.g.op("Reshape", [y, self.g.const(np.array([0, 0, -1]))])
        w_o = np.concatenate(list(_np(self.m.blocks[l].attn.W_O)[live.heads[l]]), axis=0)  # (Hl*dh, d)
        y = self.g.op("MatMul", [y, self.weight(f"W_O.{l}", w_o)])
        return self.g.op("Add", [x, y]), q_pos

    def gate(self, l: int, logits: str, q_pos: list[int], keys: list[int]) -> str:
        """(N, Hl, nq, P) bool A_ij = 1[a_ij + b > 0] restricted to the circuit; report live edge gates."""
        heads = self.live.heads[l]
        union = np.array([[[(l, h, q, k) in self.union for k in keys] for q in q_pos] for h in heads])
        bias = np.float32(self.m.blocks[l].attn.gate_bias)
        open_ = self.g.op("Greater", [logits, self.g.const(np.array(-bias, np.float32))])
        open_ = self.g.op("And", [open_, self.g.const(union)])
        flat = np.flatnonzero(union)
        if len(flat):
            hi, qi, ki = np.unravel_index(flat, union.shape)
            ids = [self.edge_index[(l, heads[a], q_pos[b], keys[c])] for a, b, c in zip(hi, qi, ki)]
            if self.maskable:
                open_ = self.g.op("And", [open_, self.closable(union.shape, flat, ids)])
            cols = self.g.op("Reshape", [open_, self.g.const(np.array([0, -1]))])
            self.edge_cols.append((self.g.op("Gather", [cols, self.g.const(flat.astype(np.int64))], axis=1), ids))
        return open_

    def closable(self, shape: tuple, flat: np.ndarray, ids: list[int]) -> str:
        """(N, Hl, nq, P) bool: at the flat positions of the circuit's edges, their `edge_mask` columns
        `ids` (elsewhere any column: the union constant has closed those already)."""
        columns = np.zeros(int(np.prod(shape)), np.int64)
        columns[flat] = ids
        picked = self.g.op("Gather", [INPUT_EDGE_MASK, self.g.const(columns)], axis=1)  # (N, Hl*nq*P)
        return self.g.op("Reshape", [picked, self.g.const(np.array([-1, *shape]))])

    def mlp(self, l: int, x: str) -> str:
        block, keep = self.m.blocks[l], self.neurons[l]
        if len(keep) == 0:
            return x
        h = self.layer_norm(x, block.ln_2, f"ln2.{l}")
        h = self.g.op("MatMul", [h, self.weight(f"fc.w.{l}", _np(block.mlp.fc.weight)[keep].T)])
        h = self.g.op("Add", [h, self.weight(f"fc.b.{l}", _np(block.mlp.fc.bias)[keep])])
        h = self.g.op("Gelu", [h])
        h = self.g.op("MatMul", [h, self.weight(f"proj.w.{l}", _np(block.mlp.proj.weight)[:, keep].T)])
        h = self.g.op("Add", [h, self.weight(f"proj.b.{l}", _np(block.mlp.proj.bias))])
        return self.g.op("Add", [x, h])

    # ---- the whole decode -------------------------------------------------------------------
    def build(self, name: str, opset: int, doc: str) -> CompiledModel:
        g = self.g
        a = g.op("Unsqueeze", [INPUT_A, g.const(np.array([1]))])  # (N, 1)
        b = g.op("Unsqueeze", [INPUT_B, g.const(np.array([1]))])
        ten = g.const(np.array(10, np.int64))
        self.zeros = g.op("Mul", [a, g.const(np.array(0, np.int64))])
        self.tokens = {0: (g.op("Div", [a, ten]), 0), 1: (g.op("Mod", [a, ten]), 0), 2: ("", PLUS),
                       3: (g.op("Div", [b, ten]), 0), 4: (g.op("Mod", [b, ten]), 0), 5: ("", EQUALS)}
        steps = [list(range(PREDICT_FROM + 1))] + [[p] for p in range(PREDICT_FROM + 1, self.T)]
        for positions in steps:
            if any(p not in self.tokens for p in positions):
                for p in positions:
                    self.tokens[p] = (self.preds[p - 1], 0)
            table = [p for p in positions if p in self.live.self_only]
            if table:
                self.tabulated(table)
            rest = [p for p in positions if p not in self.live.self_only]
            if rest:
                self.computed(rest)
        digits = g.op("Concat", [self.preds[p] for p in range(PREDICT_FROM, self.T)], axis=1)
        g.rename(digits, OUTPUT_DIGITS)
        place = g.const(10 ** np.arange(ANSWER_DIGITS - 1, -1, -1, dtype=np.int64))
        total = g.op("ReduceSum", [g.op("Mul", [digits, place]), g.const(np.array([1]))], keepdims=0)
        g.rename(total, OUTPUT_SUM)
        outputs = [tensor_info(OUTPUT_SUM, INT64, ["N"]), tensor_info(OUTPUT_DIGITS, INT64, ["N", ANSWER_DIGITS])]
        n_edges = len(self.edge_index) if self.gated else 0
        if self.gated:
            if not self.edge_cols:  # a circuit with no edge at all: an (N, 0) output
                empty = g.op("Slice", [self.zeros, g.const(np.array([0])), g.const(np.array([0])),
                                       g.const(np.array([1]))])  # zeros is (N, 1)
                self.edge_cols.append((g.op("Cast", [empty], to=BOOL), []))
            cols = g.op("Concat", [c for c, _ in self.edge_cols], axis=1) if len(self.edge_cols) > 1 \
                else self.edge_cols[0][0]
            order = [i for _, ids in self.edge_cols for i in ids]
            assert sorted(order) == list(range(n_edges)), "every circuit edge must be computed once"
            g.rename(self.g.op("Gather", [cols, g.const(np.argsort(order).astype(np.int64))], axis=1),
                     OUTPUT_EDGES)
            outputs.append(tensor_info(OUTPUT_EDGES, BOOL, ["N", n_edges]))
        inputs = [tensor_info(INPUT_A, INT64, ["N"]), tensor_info(INPUT_B, INT64, ["N"])]
        if self.maskable:
            inputs.append(tensor_info(INPUT_EDGE_MASK, BOOL, ["N", n_edges]))
        proto = g.model(inputs, outputs, opset, name, doc)
        return CompiledModel(proto, n_edges, self.kept, self.table_elements)


def compile_model(model: AdderTransformer, circuit: Circuit, gated: bool, opset: int, doc: str = "",
                  maskable: bool = False) -> CompiledModel:
    """The ONNX build of `model` with everything `circuit` marks dead left out.

    `maskable` (sparse builds): a required input `edge_mask` BOOL [N, E] (columns = circuit edges)
    whose false entries close those gates; all true gives the unmasked graph's answers.
    """
    assert gated or not maskable, "only a gated build has gates to close"
    return _Decoder(model, circuit, gated, maskable).build(circuit.model, opset, doc)
