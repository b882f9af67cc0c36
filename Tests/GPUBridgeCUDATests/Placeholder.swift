import GPUBridge
