"""`sparse-adder bench`: measure the dense and sparse builds in ONNX Runtime and end to end over gRPC."""
