import Dispatch
import GPUBridge
import GPUBridgeTestSupport
import Synchronization
import Testing

/// Request i adds `a = [i, i+1, ...]` and `b = [0.5, ...]` of length 1 + i % 13; its answer is checked exactly.
func request(_ i: Int) -> Operations.VectorPair {
    let n = 1 + i % 13
    return .init((0..<n).map { Float(i + $0) }, [Float](repeating: 0.5, count: n))
}

func isAnswer(_ c: [Float], to i: Int) -> Bool {
    c == (0..<1 + i % 13).map { Float(i + $0) + 0.5 }
}

/// `Operations.vectorAdd` that also records, per request, each time its body returned a result: a request that ran
/// to completion twice (on two devices, or twice on one) would show a count of 2.
func countingVectorAdd(_ completions: Tally) -> Operation<(Int, Operations.VectorPair), [Float]> {
    Operation(name: "vector-add", kernels: ["vector_add"], footprint: { 12 * $0.1.a.count }) {
        context, input throws(GPUBridgeError) in
        let c = try await Operations.vectorAdd.run(input.1, on: context.device, catalog: context.catalog)
        completions.record(input.0)
        return c
    }
}

/// Runs `count` requests, at most `width` at once, and returns each one's outcome by index.
func runRequests(
    _ count: Int, width: Int = 64, through bridge: Bridge, operation: Operation<(Int, Operations.VectorPair), [Float]>
)
    async -> [Result<[Float], GPUBridgeError>]
{
    await withTaskGroup(of: (Int, Result<[Float], GPUBridgeError>).self) { group in
        var outcomes = [Result<[Float], GPUBridgeError>?](repeating: nil, count: count)
        var next = 0
        func add() {
            let i = next
            next += 1
            group.addTask {
                do throws(GPUBridgeError) {
                    return (i, .success(try await bridge.run(operation, (i, request(i)))))
                } catch {
                    return (i, .failure(error))
                }
            }
        }
        while next < min(width, count) { add() }
        while let (i, outcome) = await group.next() {
            outcomes[i] = outcome
            if next < count { add() }
        }
        return outcomes.map { $0! }
    }
}

@Suite("Faults: injected launch failures, fallback, circuit breaker, stalls")
struct FaultTests {
    static let requests = 10_000

    @Test(
        "fallback on: 10 000 requests while 10% of launches fail on the first device all complete exactly once, correctly"
    )
    func tenPercentWithFallback() async throws {
        let flaky = FaultInjectingBackend(
            wrapping: CPUBackend(ordinal: 0), plan: .init(rate: [.launch: 0.1], seed: 2024))
        let healthy = CPUBackend(ordinal: 1)
        // A high threshold keeps the first device's circuit closed, so it keeps taking (and failing) its share.
        let bridge = try Bridge(options: options { $0.failureThreshold = 1_000_000 }, backends: [flaky, healthy])
        let baselines = Baselines(bridge)
        let completions = Tally()

        let outcomes = await runRequests(Self.requests, through: bridge, operation: countingVectorAdd(completions))

        var wrong = 0, failed = 0
        for (i, outcome) in outcomes.enumerated() {
            switch outcome {
            case let .success(c): if !isAnswer(c, to: i) { wrong += 1 }
            case .failure: failed += 1
            }
        }
        #expect(failed == 0)
        #expect(wrong == 0)
        let counts = completions.snapshot
        #expect(counts.count == Self.requests, "requests that completed: \(counts.count)")
        #expect(counts.values.allSatisfy { $0 == 1 }, "a request completed more than once")

        // Launch accounting: every request's one vector_add launch succeeded exactly once, on one of the devices.
        let injected = flaky.injected(.launch)
        let succeededOnFlaky = flaky.calls(.launch) - injected
        let onHealthy = healthy.counters.launches
        #expect(succeededOnFlaky + onHealthy == Self.requests)
        let share = Double(injected) / Double(flaky.calls(.launch))
        #expect(
            injected > 0 && share > 0.07 && share < 0.13, "injected \(injected) of \(flaky.calls(.launch)) launches")
        let states = bridge.broker.states
        #expect(states.map(\.succeeded).reduce(0, +) == Self.requests)
        #expect(states.allSatisfy { $0.running == 0 && $0.waiting == 0 })
        print(
            "reliability: fallback on: \(Self.requests) requests, \(flaky.calls(.launch)) launches on \(flaky.info.id), \(injected) faults injected, \(onHealthy) launches on \(healthy.info.id), 0 lost, 0 duplicated"
        )
        await baselines.check()
    }

    @Test("fallback off: every injected failure is reported to its caller; failures + successes == 10 000")
    func tenPercentWithoutFallback() async throws {
        let flaky = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 0), plan: .init(rate: [.launch: 0.1], seed: 7))
        let healthy = CPUBackend(ordinal: 1)
        let bridge = try Bridge(
            options: options {
                $0.fallback = false
                $0.attemptsPerDevice = 1  // each injected fault is one request's failure
                $0.failureThreshold = 1_000_000
            }, backends: [flaky, healthy])
        let baselines = Baselines(bridge)
        let completions = Tally()

        let outcomes = await runRequests(Self.requests, through: bridge, operation: countingVectorAdd(completions))

        var successes = 0, failures = 0, wrong = 0, unclear = 0
        for (i, outcome) in outcomes.enumerated() {
            switch outcome {
            case let .success(c):
                successes += 1
                if !isAnswer(c, to: i) { wrong += 1 }
            case let .failure(error):
                failures += 1
                guard case let .allAttemptsFailed(operation, attempts) = error, operation == "vector-add",
                    attempts.count == 1,
                    attempts[0].hasPrefix("\(flaky.info.id) attempt 1"), attempts[0].contains("injected launch fault")
                else {
                    unclear += 1
                    continue
                }
            }
        }
        #expect(successes + failures == Self.requests)
        #expect(
            failures == flaky.injected(.launch), "\(failures) failures reported, \(flaky.injected(.launch)) injected")
        #expect(failures > 0)
        #expect(wrong == 0 && unclear == 0)
        #expect(completions.snapshot.count == successes && completions.snapshot.values.allSatisfy { $0 == 1 })
        print(
            "reliability: fallback off: \(Self.requests) requests, \(flaky.injected(.launch)) faults injected, \(failures) failures reported, \(successes) successes"
        )
        await baselines.check()
    }

    @Test("a device failing permanently opens its circuit and traffic moves away from it")
    func permanentFailureOpensCircuit() async throws {
        let broken = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 0), plan: .init(always: [.launch]))
        let healthy = CPUBackend(ordinal: 1)
        let bridge = try Bridge(
            options: options {
                $0.failureThreshold = 3
                $0.attemptsPerDevice = 1
                $0.probeInterval = .seconds(600)  // no probe during the test
            }, backends: [broken, healthy])
        let baselines = Baselines(bridge)
        let completions = Tally()

        let outcomes = await runRequests(1_000, width: 16, through: bridge, operation: countingVectorAdd(completions))
        #expect(
            outcomes.enumerated().allSatisfy { i, outcome in (try? outcome.get()).map { isAnswer($0, to: i) } ?? false }
        )
        let state = bridge.broker.states[0]
        #expect(state.circuit != .closed, "circuit of the broken device: \(state.circuit)")
        #expect(state.succeeded == 0)
        // Requests already placed when the circuit opened may still fail there; after that, none reaches it.
        let reached = broken.calls(.launch)
        #expect(reached >= 3 && reached <= 3 + 16, "\(reached) launches reached the broken device")
        #expect(completions.snapshot.count == 1_000 && completions.snapshot.values.allSatisfy { $0 == 1 })
        let later = Tally()
        _ = await runRequests(1_000, width: 16, through: bridge, operation: countingVectorAdd(later))
        #expect(broken.calls(.launch) == reached, "traffic reached the open circuit")
        #expect(bridge.broker.states[1].succeeded == 2_000)
        #expect(later.snapshot.count == 1_000 && later.snapshot.values.allSatisfy { $0 == 1 })
        await baselines.check()
    }

    @Test(
        "injected failures of every operation (allocate, copy, compile, launch) at 10%: fallback completes every request"
    )
    func everyOperationFails() async throws {
        let flaky = FaultInjectingBackend(
            wrapping: CPUBackend(ordinal: 0),
            plan: .init(
                rate: [.allocate: 0.1, .copy: 0.1, .compile: 0.1, .launch: 0.1], seed: 99))
        let healthy = CPUBackend(ordinal: 1)
        let bridge = try Bridge(options: options { $0.failureThreshold = 1_000_000 }, backends: [flaky, healthy])
        let baselines = Baselines(bridge)
        let completions = Tally()
        let outcomes = await runRequests(2_000, through: bridge, operation: countingVectorAdd(completions))
        #expect(
            outcomes.enumerated().allSatisfy { i, outcome in (try? outcome.get()).map { isAnswer($0, to: i) } ?? false }
        )
        #expect(completions.snapshot.count == 2_000 && completions.snapshot.values.allSatisfy { $0 == 1 })
        let injected = FaultInjectingBackend.Operation.allCases.map { flaky.injected($0) }.reduce(0, +)
        #expect(flaky.injected(.copy) > 0 && flaky.injected(.launch) > 0)
        print(
            "reliability: mixed faults: 2000 requests, \(injected) faults injected (allocate \(flaky.injected(.allocate)), copy \(flaky.injected(.copy)), compile \(flaky.injected(.compile)), launch \(flaky.injected(.launch)))"
        )
        await baselines.check()
    }

    @Test("the rate is deterministic: the same seed fails the same call numbers")
    func rateIsDeterministic() async throws {
        func failingCalls(seed: UInt64) async throws -> [Int] {
            let backend = FaultInjectingBackend(wrapping: CPUBackend(), plan: .init(rate: [.copy: 0.25], seed: seed))
            let device = try Device(backend: backend)
            let buffer = try device.makeBuffer(of: Float.self, count: 4)
            var failed: [Int] = []
            for call in 1...400 where (try? buffer.copy(from: [1, 2, 3, 4])) == nil { failed.append(call) }
            return failed
        }
        let first = try await failingCalls(seed: 5), again = try await failingCalls(seed: 5),
            other = try await failingCalls(seed: 6)
        #expect(first == again)
        #expect(first != other)
        #expect(first.count > 60 && first.count < 140, "\(first.count) of 400 calls failed at rate 0.25")
    }

    @Test(
        "a stalled launch completes later from a background thread, with its result; requests wait for it, none is lost"
    )
    func stalls() async throws {
        let slow = FaultInjectingBackend(
            wrapping: CPUBackend(), plan: .init(stalls: [.launch: .init(.milliseconds(40))]))
        let device = try Device(backend: slow)
        let baseline = Baseline(device)
        do {
            let kernel = try device.compile(
                KernelSource(
                    name: "inc",
                    parameters: [.buffer("x", Int32.self, extent: .argument(1)), .scalar(name: "n", type: .int32)]
                ) { context in
                    let x = try context.buffer(0, as: Int32.self)
                    let n = try context.integer(1)
                    for i in context.items where i < n { x[i] += 1 }
                })
            let x = try device.makeBuffer(copying: [Int32](repeating: 0, count: 100))
            let clock = ContinuousClock()
            let start = clock.now
            let completion = try device.enqueue(kernel, .covering(100), arguments: [.buffer(x), .int32(100)])
            #expect(!completion.isComplete)  // the stall holds it back although the CPU ran it already
            try await completion.wait()
            #expect(clock.now - start >= .milliseconds(40))
            #expect(try x.toArray() == [Int32](repeating: 1, count: 100))
            #expect(slow.stalled(.launch) == 1)
        }
        await baseline.check()

        // Under load: a device whose launches stall 30% of the time by 5 ms, beside a healthy one; every request completes once.
        let stalling = FaultInjectingBackend(
            wrapping: CPUBackend(ordinal: 0),
            plan: .init(seed: 3, stalls: [.launch: .init(.milliseconds(5), rate: 0.3)]))
        let bridge = try Bridge(options: options(), backends: [stalling, CPUBackend(ordinal: 1)])
        let baselines = Baselines(bridge)
        let completions = Tally()
        let outcomes = await runRequests(1_000, through: bridge, operation: countingVectorAdd(completions))
        #expect(
            outcomes.enumerated().allSatisfy { i, outcome in (try? outcome.get()).map { isAnswer($0, to: i) } ?? false }
        )
        #expect(completions.snapshot.count == 1_000 && completions.snapshot.values.allSatisfy { $0 == 1 })
        #expect(stalling.stalled(.launch) > 0)
        await baselines.check()
    }

    // Needs an OpenCL platform with a device (PoCL in CI, installed by scripts/test).
    @Test(
        "fallback from a flaky OpenCL device to the CPU: 1 000 requests with 10% launch failures all complete once",
        .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"))
    func openCLFallback() async throws {
        let flaky = FaultInjectingBackend(wrapping: Machine.openCL[0], plan: .init(rate: [.launch: 0.1], seed: 11))
        let bridge = try Bridge(
            options: options {
                $0.backendOrder = [.opencl, .cpu]
                $0.failureThreshold = 1_000_000
            }, backends: [flaky, CPUBackend()])
        let baselines = Baselines(bridge)
        let completions = Tally()
        let outcomes = await runRequests(1_000, width: 16, through: bridge, operation: countingVectorAdd(completions))
        #expect(
            outcomes.enumerated().allSatisfy { i, outcome in (try? outcome.get()).map { isAnswer($0, to: i) } ?? false }
        )
        #expect(completions.snapshot.count == 1_000 && completions.snapshot.values.allSatisfy { $0 == 1 })
        #expect(flaky.injected(.launch) > 0)
        // The OpenCL device is shared by other suites of this process: check its pool, not its native counters.
        await baselines.check(ownsBackends: false)
    }
}
