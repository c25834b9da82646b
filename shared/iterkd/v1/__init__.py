"""Generated gRPC stubs of protos/iterkd/v1 (make protos). Do not edit."""
