"""Generated protobuf and gRPC stubs: regenerate with `make protos`, never edit by hand."""
