import GPUBridge
import GPUBridgeTestSupport
import InMemoryTracing
import Instrumentation
import Testing
import Tracing

/// One in-memory tracer for the test process (the instrumentation system is bootstrapped once).
enum TestTracing {
    static let tracer: InMemoryTracer = {
        let tracer = InMemoryTracer()
        InstrumentationSystem.bootstrap(tracer)
        return tracer
    }()
}

@Suite("Tracing")
struct TracingTests {
    @Test("each execution is a span with its device, kernels, sizes and duration; a failed attempt records its error")
    func spans() async throws {
        let tracer = TestTracing.tracer
        var options = BridgeOptions()
        options.cacheDirectory = nil
        let failing = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 44), plan: .init(always: [.launch]))
        let bridge = try Bridge(options: options, backends: [failing, CPUBackend(ordinal: 43)])
        _ = try await bridge.run(Operations.vectorAdd, .init([1, 2, 3, 4], [1, 1, 1, 1]))

        let spans = tracer.finishedSpans.filter { $0.operationName == "gpubridge.vector-add" }
        let ok = spans.filter { $0.attributes["gpubridge.device"]?.toSpanAttribute() == "cpu:43" }
        let failed = spans.filter { $0.attributes["gpubridge.device"]?.toSpanAttribute() == "cpu:44" }
        #expect(ok.count == 1)
        #expect(failed.count == 2)  // two attempts on the failing device
        let span = try #require(ok.first)
        #expect(span.attributes["gpubridge.kernels"]?.toSpanAttribute() == "vector_add")
        #expect(span.attributes["gpubridge.input.bytes"]?.toSpanAttribute() == .int64(48))
        #expect(span.attributes["gpubridge.duration.ns"] != nil)
        #expect(span.errors.isEmpty)
        #expect(failed.allSatisfy { !$0.errors.isEmpty })
    }
}
