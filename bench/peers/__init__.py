"""`make bench-peers`: our server beside KServe's and MLServer's Python servers on the same ONNX files.

Every server is driven by one client (tritonclient[grpc], Open Inference Protocol ModelInfer), in
interleaved rounds, and reported as ratios ours/peer. The peers run from their own venvs
(.venv-peers/<peer>, pinned in bench/peers/requirements-<peer>.txt): their pins clash with ours.

This package's __init__ stays import-free: the peer model modules under it are imported inside the
peer venvs, which have none of our dependencies but onnxruntime and numpy.
"""

OURS = "ours"
KSERVE = "kserve"
MLSERVER = "mlserver"
PEERS = (KSERVE, MLSERVER)
PEER_TITLES = {OURS: "sparse-adder", KSERVE: "KServe", MLSERVER: "MLServer"}
