"""The ONNX Runtime session both peer models run, set up as service/runtime.py sets up ours.

Imported inside the peer venvs: numpy and onnxruntime only (not service/, which needs our pins).
"""

import numpy as np
import onnxruntime as ort


class PeerSession:
    """One CPU session: 1 intra-op thread by default, no spinning, every output computed per run (as ours)."""

    def __init__(self, path: str, intra_op_threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Our server turns spinning off too; a spinning pool would burn a core between requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All outputs by name; the inputs cast to int64 (the graph's type) when they are not."""
        feed = {name: np.asarray(feeds[name], dtype=np.int64) for name in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))
