import Dispatch
import GPUBridge
import GPUBridgeCUDA
import GPUBridgeOpenCL
import GPUBridgeTestSupport
import Testing

/// The execution contract every backend keeps, written once and run against each backend present:
///
/// A device has in-order semantics, as a CUDA stream or an in-order OpenCL queue: launches, copies and fills enqueued
/// on a device run in the order enqueued; a synchronous copy sees everything enqueued before it; `synchronize()`
/// returns only when all enqueued work has ended; a failed command fails its own completion and the device goes on;
/// a buffer dropped right after its command was enqueued stays allocated until the command has completed; and the
/// pool is back at its baseline after every case.
///
/// Most checks need no timing luck: commands are enqueued back to back without waiting in between, over buffers large
/// enough (2 MiB) that the CPU backend runs them on its worker, and the result of a chain of non-commuting steps
/// (`x = 3x + k`) is correct only if each step saw every earlier one complete. Where a case must know a command is
/// still pending (buffer lifetime), the CPU backends hold their queue with a gate kernel that blocks the worker until
/// the test opens it.
@Suite("Execution contract on every backend")
struct ExecutionContractTests {
    enum Case: String, CaseIterable, CustomStringConvertible, Sendable {
        case launchAfterLaunch, copyAfterLaunch, launchAfterCopy, launchAfterFill, deviceCopyBetweenLaunches
        case synchronizeWaitsForEverything, refusedCommandLeavesQueueWorking, bufferLifetimeAcrossEnqueue
        var description: String { rawValue }
    }

    @Test("CPU backend", arguments: Case.allCases)
    func cpu(_ scenario: Case) async throws {
        try await ContractHarness(device: Device(backend: CPUBackend(ordinal: 40)), gated: true).run(scenario)
    }

    @Test("fault-injecting backend over the CPU (no faults planned)", arguments: Case.allCases)
    func faultInjecting(_ scenario: Case) async throws {
        let backend = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 41), plan: .init())
        try await ContractHarness(device: Device(backend: backend), gated: true).run(scenario)
        #expect(FaultInjectingBackend.Operation.allCases.allSatisfy { backend.injected($0) == 0 })
    }

    @Test(
        "OpenCL backend", .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"), arguments: Case.allCases)
    func openCL(_ scenario: Case) async throws {
        let backend = try #require(OpenCLBackendProvider().discover().devices.first)
        try await ContractHarness(device: Device(backend: backend), gated: false).run(scenario)
    }

    @Test(
        "CUDA backend", .enabled(if: Machine.hasCUDA, "no CUDA driver or device on this machine"),
        arguments: Case.allCases)
    func cuda(_ scenario: Case) async throws {
        let backend = try #require(CUDABackendProvider().discover().devices.first)
        try await ContractHarness(device: Device(backend: backend), gated: false).run(scenario)
    }

    @Test("a Swift kernel that throws fails its own completion, named; commands before and after it run")
    func kernelFailureOnCPU() async throws {
        for device in [
            try Device(backend: CPUBackend(ordinal: 42)),
            try Device(backend: FaultInjectingBackend(wrapping: CPUBackend(ordinal: 43), plan: .init())),
        ] {
            let harness = try ContractHarness(device: device, gated: true)
            let failing = try device.compile(
                KernelSource(name: "refuse_odd", scheduling: .perGroup) { context in
                    if try context.integer(0) % 2 == 1 {
                        throw GPUBridgeError.invalidArgument(name: "k", value: "odd", limit: "even")
                    }
                })
            do {
                let x = try device.makeBuffer(copying: [UInt32](repeating: 1, count: harness.n))
                var expected = [UInt32](repeating: 1, count: harness.n)
                let before = try harness.step(x, 5, &expected)
                let failed = try device.enqueue(
                    failing, Launch(groups: Extent3(4), groupSize: Extent3(1)), arguments: [.int32(1)])
                let fine = try device.enqueue(
                    failing, Launch(groups: Extent3(4), groupSize: Extent3(1)), arguments: [.int32(2)])
                let after = try harness.step(x, 6, &expected)
                try await before.wait()
                let error = await bridgeError { try await failed.wait() }
                #expect(error == .invalidArgument(name: "k", value: "odd", limit: "even"))
                try await fine.wait()
                try await after.wait()
                #expect(try x.toArray() == expected)
            }
            try await harness.finish()
        }
    }
}

/// Runs the contract's cases on one device.
struct ContractHarness {
    let device: Device
    /// Whether the device runs Swift kernels, so a gate kernel can hold its queue.
    let gated: Bool
    /// 512 Ki elements of UInt32 (2 MiB): above the CPU backend's inline limits (1 MiB, 32 768 work-items), so its
    /// commands go to its worker, and small enough that the suite stays quick under the sanitizers.
    let n = 1 << 19
    let stepProgram: Kernel
    let twiceProgram: Kernel
    let baseline: BufferPool.Statistics

    init(device: Device, gated: Bool) throws {
        self.device = device
        self.gated = gated
        baseline = device.pool.statistics
        stepProgram = try device.compile(Self.source(Self.stepKernel, on: device))
        twiceProgram = try device.compile(Self.source(Self.twiceKernel, on: device))
    }

    static let stepKernel = PortableKernel(
        name: "contract_step",
        text: """
            GB_KERNEL contract_step(GB_GLOBAL uint* x, int n, uint k) {
                int i = GB_GLOBAL_ID(0);
                if (i < n) x[i] = x[i] * 3u + k;
            }
            """,
        entryPoint: "contract_step",
        parameters: [
            .buffer("x", UInt32.self, extent: .argument(1)), .scalar(name: "n", type: .int32),
            .scalar(name: "k", type: .uint32),
        ])

    static let twiceKernel = PortableKernel(
        name: "contract_twice",
        text: """
            GB_KERNEL contract_twice(GB_GLOBAL const uint* x, GB_GLOBAL uint* y, int n) {
                int i = GB_GLOBAL_ID(0);
                if (i < n) y[i] = x[i] * 2u + 1u;
            }
            """,
        entryPoint: "contract_twice",
        parameters: [
            .buffer("x", UInt32.self, extent: .argument(2)), .buffer("y", UInt32.self, extent: .argument(2)),
            .scalar(name: "n", type: .int32),
        ])

    /// The kernel in the device's language: the portable text for OpenCL and CUDA, the same body in Swift for the CPU.
    static func source(_ kernel: PortableKernel, on device: Device) throws -> KernelSource {
        if device.backend.languages.contains(.openCLC) { return try kernel.source(for: .openCLC) }
        if device.backend.languages.contains(.cuda) { return try kernel.source(for: .cuda) }
        switch kernel.name {
        case "contract_step":
            return KernelSource(name: kernel.name, parameters: kernel.parameters) { c in
                let x = try c.buffer(0, as: UInt32.self)
                let n = try c.integer(1)
                let k = try c.uint32(2)
                for i in c.items where i < n { x[i] = x[i] &* 3 &+ k }
            }
        default:
            return KernelSource(name: kernel.name, parameters: kernel.parameters) { c in
                let x = try c.buffer(0, as: UInt32.self)
                let y = try c.buffer(1, as: UInt32.self)
                let n = try c.integer(2)
                for i in c.items where i < n { y[i] = x[i] &* 2 &+ 1 }
            }
        }
    }

    func launch(_ count: Int) -> Launch { Launch(groups: Extent3((count + 255) / 256), groupSize: Extent3(256)) }

    /// Enqueues `x[i] = 3 x[i] + k` over the first `count` elements and applies the same to `expected`.
    func step(_ x: Buffer<UInt32>, _ k: UInt32, _ expected: inout [UInt32], count: Int? = nil) throws -> Completion {
        let count = count ?? x.count
        for i in 0..<count { expected[i] = expected[i] &* 3 &+ k }
        return try device.enqueue(
            stepProgram, launch(count), arguments: [.buffer(x.raw), .int32(Int32(count)), .uint32(k)])
    }

    /// Enqueues `y = 2x + 1`.
    func twice(_ x: Buffer<UInt32>, into y: Buffer<UInt32>) throws -> Completion {
        try device.enqueue(
            twiceProgram, launch(x.count), arguments: [.buffer(x.raw), .buffer(y.raw), .int32(Int32(x.count))])
    }

    func initial() -> [UInt32] { (0..<n).map { UInt32(truncatingIfNeeded: $0 &* 2_654_435_761) } }

    /// A closed gate: a Swift kernel that holds the device's queue (its worker) until `open` is called.
    func closedGate() throws -> (completion: Completion, open: @Sendable () -> Void) {
        let gate = DispatchSemaphore(value: 0)
        let kernel = try device.compile(KernelSource(name: "contract_gate", scheduling: .perGroup) { _ in gate.wait() })
        let completion = try device.enqueue(kernel, Launch(groups: Extent3(1), groupSize: Extent3(1)), arguments: [])
        return (completion, { gate.signal() })
    }

    /// Waits (up to 5 s) until the pool is back at its baseline: a backend completing from a driver callback thread
    /// lets go of a command's buffers just after resuming its waiters, possibly after `synchronize()` returned.
    func settled(blocks: Int? = nil) async {
        let target = blocks ?? baseline.blocksInUse
        let deadline = ContinuousClock.now + .seconds(5)
        while device.pool.statistics.blocksInUse != target, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Ends a case: the device is idle and the pool is back at its baseline.
    func finish() async throws {
        try await device.synchronize()
        await settled()
        let now = device.pool.statistics
        #expect(now.bytesInUse == baseline.bytesInUse)
        #expect(now.blocksInUse == baseline.blocksInUse)
        #expect(now.bytesInUse >= 0 && now.blocksInUse >= 0)
    }

    func run(_ scenario: ExecutionContractTests.Case) async throws {
        switch scenario {
        case .launchAfterLaunch: try await launchAfterLaunch()
        case .copyAfterLaunch: try await copyAfterLaunch()
        case .launchAfterCopy: try await launchAfterCopy()
        case .launchAfterFill: try await launchAfterFill()
        case .deviceCopyBetweenLaunches: try await deviceCopyBetweenLaunches()
        case .synchronizeWaitsForEverything: try await synchronizeWaitsForEverything()
        case .refusedCommandLeavesQueueWorking: try await refusedCommandLeavesQueueWorking()
        case .bufferLifetimeAcrossEnqueue: try await bufferLifetimeAcrossEnqueue()
        }
        try await finish()
    }

    /// Large and small launches interleaved, none waited for until the last: `3x + k` chains only come out right in
    /// enqueue order.
    func launchAfterLaunch() async throws {
        var expected = initial()
        let x = try device.makeBuffer(copying: expected)
        var completions: [Completion] = []
        for k in UInt32(1)...12 {
            // Odd steps over the whole buffer (the CPU backend's worker), even ones over 1 000 elements (inline when
            // its queue is idle, queued behind the large ones otherwise).
            completions.append(try step(x, k, &expected, count: k % 2 == 1 ? nil : 1000))
        }
        try await completions.last?.wait()
        #expect(completions.allSatisfy { $0.isComplete })  // an in-order queue completes the earlier ones first
        #expect(try x.toArray() == expected)
    }

    /// A synchronous read right after a launch sees it; so does an asynchronous read waited for on its own.
    func copyAfterLaunch() async throws {
        var expected = initial()
        let x = try device.makeBuffer(copying: expected)
        _ = try step(x, 7, &expected)
        #expect(try x.toArray() == expected)  // no wait: the synchronous copy runs after the launch
        _ = try step(x, 8, &expected)
        let host = try device.makeHostBuffer(byteCount: n * 4)
        host.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0xEE) }  // a sentinel
        try await x.enqueueCopy(to: host).wait()
        #expect(try host.read(UInt32.self, count: n) == expected)
    }

    /// A launch right after an asynchronous upload (not waited for) sees the uploaded data.
    func launchAfterCopy() async throws {
        var expected = initial()
        let x = try device.makeBuffer(of: UInt32.self, count: n)
        let host = try device.makeHostBuffer(byteCount: n * 4)
        try host.write(expected)
        let y = try device.makeBuffer(of: UInt32.self, count: n)
        _ = try x.enqueueCopy(from: host)
        _ = try step(x, 9, &expected)
        _ = try twice(x, into: y)
        #expect(try y.toArray() == expected.map { $0 &* 2 &+ 1 })
        // An upload from an array (staged through host memory the completion keeps alive), then a launch.
        let fresh = initial().reversed().map { $0 }
        var again = fresh
        _ = try x.enqueueCopy(from: fresh)
        try await step(x, 10, &again).wait()
        #expect(try x.toArray() == again)
    }

    /// A launch after a fill (not waited for) sees the fill.
    func launchAfterFill() async throws {
        let x = try device.makeBuffer(copying: initial())
        _ = try x.raw.enqueueFill(pattern: [0x11, 0x22, 0x33, 0x44])
        var expected = [UInt32](repeating: 0x4433_2211, count: n)
        try await step(x, 3, &expected).wait()
        #expect(try x.toArray() == expected)
    }

    /// launch -> device copy -> launch on the copy, waiting only for the last.
    func deviceCopyBetweenLaunches() async throws {
        var expected = initial()
        let x = try device.makeBuffer(copying: expected)
        let y = try device.makeBuffer(of: UInt32.self, count: n)
        _ = try y.raw.enqueueFill(pattern: [0xEE])  // a sentinel the copy must overwrite
        _ = try step(x, 4, &expected)
        _ = try y.raw.enqueueCopy(from: x.raw)
        var copied = expected
        try await step(y, 5, &copied).wait()
        #expect(try y.toArray() == copied)
        #expect(try x.toArray() == expected)
    }

    /// After `synchronize()` every command enqueued before it has completed.
    func synchronizeWaitsForEverything() async throws {
        var expected = initial()
        let x = try device.makeBuffer(copying: expected)
        let y = try device.makeBuffer(of: UInt32.self, count: n)
        let host = try device.makeHostBuffer(byteCount: n * 4)
        var completions: [Completion] = []
        for k in UInt32(1)...6 {
            completions.append(try step(x, k, &expected))
            completions.append(try y.raw.enqueueFill(pattern: [UInt8(k)]))
            completions.append(try y.raw.enqueueCopy(from: x.raw))
        }
        completions.append(try y.enqueueCopy(to: host))
        try await device.synchronize()
        #expect(completions.allSatisfy { $0.isComplete })
        #expect(try host.read(UInt32.self, count: n) == expected)
    }

    /// A command refused at enqueue (bad arguments) changes nothing; the commands around it run in order.
    func refusedCommandLeavesQueueWorking() async throws {
        var expected = initial()
        let x = try device.makeBuffer(copying: expected)
        _ = try step(x, 1, &expected)
        let error = bridgeError {
            try device.enqueue(stepProgram, launch(n), arguments: [.buffer(x.raw), .int32(Int32(n))])  // one short
        }
        guard case .argumentMismatch = error else {
            Issue.record("expected argumentMismatch, got \(String(describing: error))"); return
        }
        let tooFar = bridgeError {
            try device.enqueue(stepProgram, launch(n), arguments: [.buffer(x.raw), .int32(Int32(n + 1)), .uint32(1)])
        }
        #expect(tooFar != nil)
        try await step(x, 2, &expected).wait()
        #expect(try x.toArray() == expected)
    }

    /// Buffers dropped right after their commands were enqueued stay allocated (their blocks in use, not handed out
    /// again, their segments not freed by a trim) until those commands have completed.
    func bufferLifetimeAcrossEnqueue() async throws {
        let blocksBefore = device.pool.statistics.blocksInUse
        var pending: [Completion] = []
        var regions: [DeviceRegion] = []
        var expected = initial()
        var gate: (completion: Completion, open: @Sendable () -> Void)?
        do {
            let a = try device.makeBuffer(copying: expected)
            let b = try device.makeBuffer(of: UInt32.self, count: n)
            let c = try device.makeBuffer(of: UInt32.self, count: n)
            let host = try device.makeHostBuffer(byteCount: n * 4)
            // Closed after the synchronous upload above (which would otherwise wait behind it).
            if gated { gate = try closedGate() }
            pending.append(try step(a, 1, &expected))
            pending.append(try b.raw.enqueueCopy(from: a.raw))
            pending.append(try c.raw.enqueueFill(pattern: [7]))
            pending.append(try b.enqueueCopy(to: host))
            regions = [a.raw.region, b.raw.region, c.raw.region]
        }
        // a, b, c and the host buffer are dropped here, with their commands enqueued.
        if let gate {
            #expect(pending.allSatisfy { !$0.isComplete })  // held behind the gate
            #expect(device.pool.statistics.blocksInUse == blocksBefore + 3)
            device.pool.trim()
            #expect(device.pool.statistics.blocksInUse == blocksBefore + 3)
            let other = try device.makeBuffer(of: UInt32.self, count: n)
            #expect(!regions.contains(other.raw.region))
            gate.open()
            try await gate.completion.wait()
        } else {
            // Without a way to hold the device: whatever has not completed yet still holds its block. The blocks are
            // counted first: a command still pending after that count was pending during it, with its block held.
            let blocksInUse = device.pool.statistics.blocksInUse
            let stillPending = pending.filter { !$0.isComplete }.count
            #expect(blocksInUse >= blocksBefore + min(stillPending, 1))
        }
        for completion in pending { try await completion.wait() }
        try await device.synchronize()
        await settled(blocks: blocksBefore)
        #expect(device.pool.statistics.blocksInUse == blocksBefore)
    }
}
