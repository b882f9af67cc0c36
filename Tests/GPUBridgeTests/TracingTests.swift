import GPUBridge
import GPUBridgeTestSupport
import InMemoryTracing
import Instrumentation
import Testing
import Tracing

@Suite("Tracing")
struct TracingTests {
    @Test("each execution is a span with its device, kernels, sizes and duration; a failed attempt records its error")
    func spans() async throws {
        let tracer = TestTracing.tracer
        var options = BridgeOptions()
        options.cacheDirectory = nil
        let failing = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 44), plan: .init(always: [.launch]))
        let bridge = try Bridge(options: options, backends: [failing, CPUBackend(ordinal: 43)])
        _ = try await TestTracing.recording {
            try await bridge.run(Operations.vectorAdd, .init([1, 2, 3, 4], [1, 1, 1, 1]))
        }

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

    @Test("a launch and the copies around it are spans under the caller's span, with device, kernel and bytes")
    func launchAndCopySpans() async throws {
        let tracer = TestTracing.tracer
        let device = try Device(backend: CPUBackend(ordinal: 45))
        let double = KernelSource(name: "traced_double") { context in
            let x = try context.buffer(0, as: Float.self)
            for i in context.items where i < x.count { x[i] *= 2 }
        }
        let kernel = try device.compile(double)
        var output: [Float] = [-1]
        let parentTrace = try await TestTracing.recording {
            try await withSpan("test.parent") { span in
                let x = try device.makeBuffer(copying: [Float](repeating: 3, count: 1000))
                try await device.launch(kernel, .covering(1000), arguments: [.buffer(x)])
                output = try x.toArray()
                return span.context.inMemorySpanContext?.traceID
            }
        }
        #expect(output == [Float](repeating: 6, count: 1000))
        let trace = try #require(parentTrace)
        let spans = tracer.finishedSpans.filter { $0.spanContext.traceID == trace }
        let parent = try #require(spans.first { $0.operationName == "test.parent" })
        let launch = try #require(spans.first { $0.operationName == SpanNames.launch })
        #expect(launch.spanContext.parentSpanID == parent.spanContext.spanID)
        #expect(launch.attributes["gpubridge.kernel"]?.toSpanAttribute() == "traced_double")
        #expect(launch.attributes["gpubridge.device"]?.toSpanAttribute() == "cpu:45")
        #expect(launch.attributes["gpubridge.launch.device_ns"] != nil)
        let copies = spans.filter { $0.operationName == SpanNames.copy }
        #expect(copies.count == 2, "\(copies.map(\.attributes))")
        let directions = copies.compactMap { copy -> String? in
            guard case let .string(direction)? = copy.attributes["gpubridge.copy.direction"]?.toSpanAttribute() else {
                return nil
            }
            return direction
        }
        #expect(directions.sorted() == ["to_device", "to_host"])
        #expect(copies.allSatisfy { $0.attributes["gpubridge.copy.bytes"]?.toSpanAttribute() == .int64(4000) })
        #expect(copies.allSatisfy { $0.spanContext.parentSpanID == parent.spanContext.spanID })
    }

    @Test("a failed launch ends its span with the error")
    func failedLaunchSpan() async throws {
        let tracer = TestTracing.tracer
        let failing = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 46), plan: .init(always: [.launch]))
        let device = try Device(backend: failing)
        let kernel = try device.compile(KernelSource(name: "never_runs") { _ in })
        let a = try device.makeBuffer(copying: [Float](repeating: 1, count: 16))
        let trace = await TestTracing.recording {
            await withSpan("test.failing") { span in
                _ = try? await device.launch(kernel, .covering(16), arguments: [.buffer(a)])
                return span.context.inMemorySpanContext?.traceID
            }
        }
        let launch = try #require(
            tracer.finishedSpans.first { $0.spanContext.traceID == trace && $0.operationName == SpanNames.launch })
        #expect(launch.errors.count == 1)
        #expect(launch.status?.code == .error)
    }

    @Test("spans made outside a recording scope are not kept")
    func unscopedSpansDropped() async throws {
        let tracer = TestTracing.tracer
        let device = try Device(backend: CPUBackend(ordinal: 47))
        _ = try device.makeBuffer(copying: [UInt8](repeating: 7, count: 4093))
        #expect(
            !tracer.finishedSpans.contains { $0.attributes["gpubridge.copy.bytes"]?.toSpanAttribute() == .int64(4093) })
    }
}
