import GPUBridge
import GPUBridgeTestSupport
import Testing

@Suite("Runtime: catalog, built-in kernels, bridge, broker, fallback, batching")
struct RuntimeTests {
    func bridge(_ backends: [any DeviceBackend], configure: (inout BridgeOptions) -> Void = { _ in }) throws -> Bridge {
        var options = BridgeOptions()
        options.cacheDirectory = nil
        configure(&options)
        return try Bridge(options: options, backends: backends)
    }

    @Test("every built-in kernel on the CPU backend agrees with the host reference")
    func builtinsOnCPU() async throws {
        let failures = await BuiltinKernelChecks.run(on: try makeCPUDevice())
        #expect(failures.isEmpty, "\(failures)")
    }

    @Test("the catalog lists the built-ins, registers user kernels and rejects unknown ids")
    func catalog() async throws {
        let catalog = KernelCatalog()
        let ids = catalog.all.map(\.id)
        for id in [
            "vector_add", "saxpy", "scale", "dot_partial", "sum_partial", "matmul", "softmax_rows", "cosine_scores",
            "topk_select", "histogram",
        ] {
            #expect(ids.contains(id))
        }
        #expect(catalog.all.allSatisfy { Set($0.backends) == [.cpu, .cuda, .opencl] })
        #expect(throws: GPUBridgeError.notFound(kind: "kernel", name: "no_such_kernel")) {
            try catalog.definition("no_such_kernel")
        }

        try catalog.register(
            KernelDefinition(
                id: "triple", summary: "y = 3x",
                parameters: [.buffer("y", Float.self), .scalar(name: "n", type: .int32)],
                portableText:
                    "GB_KERNEL triple(GB_GLOBAL float* y, int n) { int i = GB_GLOBAL_ID(0); if (i < n) y[i] *= 3.0f; }",
                entryPoint: "triple"
            ) { context in
                let y = try context.buffer(0, as: Float.self)
                for i in context.items.clamped(to: 0..<(try context.integer(1))) { y[i] *= 3 }
            })
        let device = try makeCPUDevice()
        let y = try device.makeBuffer(copying: [Float](repeating: 2, count: 10))
        try await device.launch(
            try catalog.kernel("triple", on: device), .covering(10), arguments: [.buffer(y), .int32(10)])
        #expect(try y.toArray() == [Float](repeating: 6, count: 10))
        #expect(throws: GPUBridgeError.self) {
            try catalog.register(
                KernelDefinition(id: "", summary: "", parameters: [], portableText: "x", entryPoint: "x", swift: nil))
        }

        // An operation naming an unknown kernel fails before it runs anywhere.
        let bridge = try bridge([CPUBackend()])
        let unknown = Operation<Int, Int>(name: "unknown", kernels: ["missing_kernel"]) { _, x throws(GPUBridgeError) in
            x
        }
        await #expect(throws: GPUBridgeError.notFound(kind: "kernel", name: "missing_kernel")) {
            try await bridge.run(unknown, 1)
        }
    }

    @Test("bridge options are validated with clear errors")
    func options() throws {
        var options = BridgeOptions()
        #expect(throws: Never.self) { try options.validate() }
        let bad: [(inout BridgeOptions) -> Void] = [
            { $0.backendOrder = [] }, { $0.backendOrder = [.cpu, .cpu] }, { $0.maxConcurrentLaunchesPerDevice = 0 },
            { $0.poolLimitPerDevice = -1 }, { $0.microBatchSize = 0 }, { $0.microBatchWindow = .seconds(-1) },
            { $0.attemptsPerDevice = 0 }, { $0.failureThreshold = 0 }, { $0.cacheDirectory = "" },
        ]
        for change in bad {
            options = BridgeOptions()
            change(&options)
            let error = bridgeError { try options.validate() }
            guard case .invalidArgument = error else {
                Issue.record("expected invalidArgument, got \(String(describing: error))"); continue
            }
        }
        #expect(throws: GPUBridgeError.self) { try Bridge(options: BridgeOptions(), backends: []) }
    }

    @Test("a failing device: the request completes on the next device; with fallback off the error lists each attempt")
    func fallback() async throws {
        let failing = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 1), plan: .init(always: [.launch]))
        let healthy = CPUBackend(ordinal: 0)
        let a: [Float] = [1, 2, 3], b: [Float] = [10, 20, 30]

        let withFallback = try bridge([failing, healthy])
        let c = try await withFallback.run(Operations.vectorAdd, .init(a, b))
        #expect(c == [11, 22, 33])
        #expect(failing.injected(.launch) == 2)  // two attempts on the failing device, then the next device
        let states = withFallback.broker.states
        #expect(states[0].failed == 2 && states[0].succeeded == 0)
        #expect(states[1].succeeded == 1)

        let without = try bridge([
            FaultInjectingBackend(wrapping: CPUBackend(ordinal: 1), plan: .init(always: [.launch])), healthy,
        ]) {
            $0.fallback = false
        }
        let error = await bridgeError { try await without.run(Operations.vectorAdd, .init(a, b)) }
        guard case let .allAttemptsFailed(operation, attempts) = error else {
            Issue.record("got \(String(describing: error))"); return
        }
        #expect(operation == "vector-add")
        #expect(attempts.count == 2)
        #expect(attempts.allSatisfy { $0.contains("cpu:1") && $0.contains("injected launch fault") })
        #expect(without.broker.states[1].succeeded == 0)  // never moved on

        // A caller error is reported as it is, at once, without trying other devices.
        let mismatch = await bridgeError { try await withFallback.run(Operations.vectorAdd, .init([1, 2], [1])) }
        #expect(mismatch == .sizeMismatch(name: "b.count", expected: 2, actual: 1))
    }

    @Test("the broker spreads load, opens a failing device's circuit and closes it after a good probe")
    func broker() async throws {
        let flaky = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 1))
        let steady = CPUBackend(ordinal: 0)
        let bridge = try bridge([flaky, steady]) {
            $0.maxConcurrentLaunchesPerDevice = 2
            $0.attemptsPerDevice = 1
            $0.failureThreshold = 3
            $0.probeInterval = .zero  // the next request after opening is the probe
        }
        // Load spreading: 200 concurrent requests on two healthy devices both get work.
        let n = 50_000
        let sums = try await withThrowingTaskGroup(of: Float.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let out = try await bridge.run(
                        Operations.scale, (alpha: Float(i), x: [Float](repeating: 1, count: n)))
                    return out[n - 1]
                }
            }
            return try await group.reduce(into: [Float]()) { $0.append($1) }
        }
        #expect(Set(sums) == Set((0..<200).map(Float.init)))
        let spread = bridge.broker.states
        #expect(spread[0].succeeded > 0 && spread[1].succeeded > 0)
        #expect(spread[0].succeeded + spread[1].succeeded == 200)

        // The flaky device now fails every launch: three failures open its circuit. A slot held on the steady device
        // makes the flaky one the less loaded, so each request tries it first whatever the pools hold.
        flaky.setPlan(.init(always: [.launch]))
        let busy = try #require(await bridge.broker.acquire(backends: [.cpu], excluding: [flaky.info.id]))
        for _ in 0..<3 { #expect(try await bridge.run(Operations.scale, (alpha: 2, x: [1, 2, 3])) == [2, 4, 6]) }
        bridge.broker.release(busy, succeeded: true)
        #expect(bridge.broker.states[0].consecutiveFailures == 3)
        #expect(bridge.broker.states[0].circuit != .closed)
        let failedBefore = flaky.injected(.launch)
        // ...and traffic moves away: with a zero probe interval each request may probe once, and fails over.
        for _ in 0..<10 { #expect(try await bridge.run(Operations.scale, (alpha: 2, x: [1, 2, 3])) == [2, 4, 6]) }
        #expect(bridge.broker.states[0].circuit != .closed)
        #expect(flaky.injected(.launch) - failedBefore <= 10)

        // Healed: the next probe succeeds and closes the circuit.
        flaky.setPlan(.init())
        for _ in 0..<4 { _ = try await bridge.run(Operations.scale, (alpha: 2, x: [1, 2, 3])) }
        #expect(bridge.broker.states[0].circuit == .closed)
        #expect(bridge.broker.states[0].consecutiveFailures == 0)
    }

    @Test("a device whose probe is due gets the next request, even when an idle device has more memory free")
    func probeGoesFirst() async throws {
        let bridge = try bridge([CPUBackend(ordinal: 0), CPUBackend(ordinal: 1)]) {
            $0.failureThreshold = 1
            $0.probeInterval = .zero
        }
        let broker = bridge.broker, first = bridge.devices[0].id, second = bridge.devices[1].id
        // The first device holds memory, so on load and memory alone the second would win every idle choice.
        let held = try bridge.devices[0].makeBuffer(of: Float.self, count: 1 << 20)
        #expect(broker.states[0].unreservedMemory < broker.states[1].unreservedMemory)
        let idle = try #require(await broker.acquire(backends: [.cpu]))
        #expect(idle.device.id == second)
        broker.release(idle, succeeded: true)
        let failing = try #require(await broker.acquire(backends: [.cpu], excluding: [second]))
        broker.release(failing, succeeded: false)
        #expect(broker.states[0].circuit == .halfOpen)  // threshold 1, probe interval zero

        let probe = try #require(await broker.acquire(backends: [.cpu]))
        #expect(probe.device.id == first)
        // One probe at a time: while it runs, requests go elsewhere.
        let other = try #require(await broker.acquire(backends: [.cpu]))
        #expect(other.device.id == second)
        broker.release(other, succeeded: true)
        broker.release(probe, succeeded: true)
        #expect(broker.states[0].circuit == .closed)
        #expect(broker.states[0].consecutiveFailures == 0)
        // Closed again, the choice is by load and memory: the second device.
        let next = try #require(await broker.acquire(backends: [.cpu]))
        #expect(next.device.id == second)
        broker.release(next, succeeded: true)
        _ = held
    }

    @Test("10 000 concurrent small requests through the batcher each get exactly their own result")
    func batching() async throws {
        let bridge = try bridge([CPUBackend()]) {
            $0.microBatchSize = 512; $0.microBatchWindow = .milliseconds(2)
        }
        let batcher = try bridge.vectorAddBatcher()
        let wrong = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<10_000 {
                group.addTask {
                    let n = 1 + i % 7
                    let a = (0..<n).map { Float(i * 10 + $0) }
                    let c = try await batcher.submit(.init(a, [Float](repeating: 0.5, count: n)))
                    return c == a.map { $0 + 0.5 } ? 0 : 1
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(wrong == 0)
        let batches = await batcher.batches, requests = await batcher.requests
        #expect(requests == 10_000)
        #expect(batches < 10_000 / 10)  // coalesced: far fewer launches than requests
        // A bad request fails alone.
        await #expect(throws: GPUBridgeError.self) { try await batcher.submit(.init([1, 2], [1])) }
        #expect(try await batcher.submit(.init([1], [2])) == [3])
    }
}
