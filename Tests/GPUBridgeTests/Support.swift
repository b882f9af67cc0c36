import GPUBridge
import GPUBridgeTestSupport
import Testing

/// A fresh CPU device with its own pool (and optional limit), so pool statistics in one test are not disturbed by others.
func makeCPUDevice(ordinal: Int = 0, poolLimit: Int? = nil) throws -> Device {
    try Device(backend: CPUBackend(ordinal: ordinal), poolLimit: poolLimit)
}

/// A kernel that adds `k` to every element of a float buffer: parameters (data, k, n).
let addConstantKernel = KernelSource(
    name: "add_constant",
    parameters: [
        .buffer("data", Float.self, extent: .argument(2)), .scalar(name: "k", type: .float32),
        .scalar(name: "n", type: .int32),
    ]
) { context in
    let data = try context.buffer(0, as: Float.self)
    let k = try context.float(1)
    let n = try context.integer(2)
    for i in context.items where i < n { data[i] += k }
}

/// A temporary folder removed by the caller.
func temporaryFolder(_ name: String) -> String {
    let base = "/tmp/gpubridge-tests-\(getpid())-\(name)-\(UInt64(ContinuousClock.now.hashValue & 0xffff_ffff))"
    return base
}

#if canImport(Glibc)
    import Glibc
#endif
