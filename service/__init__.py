"""The sparse-adder gRPC service: serves the ONNX builds from the model repository (never imports torch)."""
