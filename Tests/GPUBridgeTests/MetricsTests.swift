import CoreMetrics
import GPUBridge
import Synchronization
import Testing

/// Records every counter and timer value by label and dimensions.
final class RecordingMetrics: MetricsFactory {
    final class Handler: CounterHandler, TimerHandler, RecorderHandler {
        let values = Mutex<[Int64]>([])
        func increment(by amount: Int64) { values.withLock { $0.append(amount) } }
        func reset() { values.withLock { $0.removeAll() } }
        func recordNanoseconds(_ duration: Int64) { values.withLock { $0.append(duration) } }
        func record(_ value: Int64) { values.withLock { $0.append(value) } }
        func record(_ value: Double) { values.withLock { $0.append(Int64(value)) } }
        var total: Int64 { values.withLock { $0.reduce(0, +) } }
        var count: Int { values.withLock { $0.count } }
    }

    let handlers = Mutex<[String: Handler]>([:])

    func handler(_ label: String, _ dimensions: [(String, String)]) -> Handler {
        let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        return handlers.withLock { all in
            if let h = all[key] { return h }
            let h = Handler()
            all[key] = h
            return h
        }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { handler(label, dimensions) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        handler(label, dimensions)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { handler(label, dimensions) }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}

    /// Bootstrapped once per test process.
    static let shared: RecordingMetrics = {
        let metrics = RecordingMetrics()
        MetricsSystem.bootstrap(metrics)
        return metrics
    }()
}

@Suite("Metrics")
struct MetricsTests {
    @Test("pool hits and misses, bytes allocated, launches and their latency are counted per device")
    func counted() async throws {
        let metrics = RecordingMetrics.shared
        let device = try Device(backend: CPUBackend(ordinal: 42))
        let dims = [("device", "cpu:42")]
        let kernel = try device.compile(addConstantKernel)
        for _ in 0..<3 {
            let data = try device.makeBuffer(copying: [Float](repeating: 0, count: 256))
            try await device.launch(kernel, .covering(256), arguments: [.buffer(data), .float(1), .int32(256)])
        }
        #expect(metrics.handler("gpubridge_pool_misses_total", dims).total == 1)
        #expect(metrics.handler("gpubridge_pool_hits_total", dims).total == 2)
        #expect(metrics.handler("gpubridge_bytes_allocated_total", dims).total == Int64(BufferPool.smallSegmentSize))
        #expect(metrics.handler("gpubridge_kernels_launched_total", dims).total == 3)
        #expect(metrics.handler("gpubridge_launch_latency_seconds", dims).count == 3)
        #expect(metrics.handler("gpubridge_bytes_copied_total", dims).total == 3 * 256 * 4)  // three uploads
    }
}
