import Metrics

/// The pool's swift-metrics instruments, labelled by device. Created once per pool.
struct PoolMetrics: Sendable {
    let hits: Counter
    let misses: Counter
    let bytesAllocated: Counter

    init(device: String) {
        let dimensions = [("device", device)]
        hits = Counter(label: "gpubridge_pool_hits_total", dimensions: dimensions)
        misses = Counter(label: "gpubridge_pool_misses_total", dimensions: dimensions)
        bytesAllocated = Counter(label: "gpubridge_bytes_allocated_total", dimensions: dimensions)
    }
}

/// The device's swift-metrics instruments for launches, copies and compiles, labelled by device.
struct DeviceMetrics: Sendable {
    let launches: Counter
    let launchFailures: Counter
    let launchLatency: Timer
    let bytesCopied: Counter
    let compiles: Counter
    let compileFailures: Counter

    init(device: String) {
        let dimensions = [("device", device)]
        launches = Counter(label: "gpubridge_kernels_launched_total", dimensions: dimensions)
        launchFailures = Counter(label: "gpubridge_launch_failures_total", dimensions: dimensions)
        launchLatency = Timer(label: "gpubridge_launch_latency_seconds", dimensions: dimensions)
        bytesCopied = Counter(label: "gpubridge_bytes_copied_total", dimensions: dimensions)
        compiles = Counter(label: "gpubridge_kernels_compiled_total", dimensions: dimensions)
        compileFailures = Counter(label: "gpubridge_compile_failures_total", dimensions: dimensions)
    }
}
