"""A minimal append-only ONNX graph builder: unique names, initializers from numpy, typed nodes."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Collects nodes and initializers; `op` returns the output name(s) of the node it adds."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, array, hint: str = "c") -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, n_out: int = 1, node_name: str = "",
           **attrs):
        """`node_name` (optional) says what the node computes; tests read the graph by it."""
        outs = [self._name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name or None, **attrs))
        return outs[0] if n_out == 1 else outs

    def rename(self, name: str, new: str) -> None:
        """Give the tensor produced as `name` the public name `new` (a graph output)."""
        self.nodes.append(helper.make_node("Identity", [name], [new]))

    def model(self, inputs, outputs, opset: int, graph_name: str, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="sparse-adder", doc_string=doc)
        model.ir_version = 9
        onnx.checker.check_model(model)
        return model


def tensor_info(name: str, elem: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


INT64, FLOAT, BOOL = TensorProto.INT64, TensorProto.FLOAT, TensorProto.BOOL
