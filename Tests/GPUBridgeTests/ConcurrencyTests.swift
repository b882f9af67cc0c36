import Dispatch
import Synchronization
import GPUBridge
import GPUBridgeTestSupport
import Testing

@Suite("Concurrency and zero-copy")
struct ConcurrencyTests {
    @Test("1000 concurrent tasks allocate, launch and read back their own results")
    func thousandTasks() async throws {
        let device = try makeCPUDevice()
        let kernel = try device.compile(addConstantKernel)
        let wrong = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<1000 {
                group.addTask {
                    let n = 100 + task % 300
                    let buffer = try device.makeBuffer(copying: (0..<n).map { Float($0) })
                    try await device.launch(
                        kernel, .covering(n, groupSize: 64),
                        arguments: [.buffer(buffer), .float(Float(task)), .int32(Int32(n))])
                    let out = try buffer.toArray()
                    return (0..<n).filter { out[$0] != Float($0) + Float(task) }.count
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(wrong == 0)
        #expect(device.pool.statistics.bytesInUse == 0)
        #expect(device.counters.launches == 1000)
    }

    @Test("1000 launches over resident buffers allocate nothing and copy nothing")
    func zeroCopy() async throws {
        let device = try makeCPUDevice()
        let kernel = try device.compile(addConstantKernel)
        let n = 100_000  // large enough to run split across the cores
        let data = try device.makeBuffer(copying: [Float](repeating: 0, count: n))
        let view = try data.view(offset: 1000, count: 5000)
        // warm-up
        try await device.launch(kernel, .covering(n), arguments: [.buffer(data), .float(1), .int32(Int32(n))])
        let before = device.counters.snapshot
        let poolBefore = device.pool.statistics
        for i in 0..<1000 {
            if i % 2 == 0 {
                try await device.launch(kernel, .covering(n), arguments: [.buffer(data), .float(1), .int32(Int32(n))])
            } else {
                try await device.launch(kernel, .covering(5000), arguments: [.buffer(view), .float(1), .int32(5000)])
            }
        }
        let after = device.counters.snapshot
        #expect(after.allocations == before.allocations)
        #expect(after.copies == before.copies)
        #expect(after.bytesCopied == before.bytesCopied)
        #expect(after.launches == before.launches + 1000)
        #expect(device.pool.statistics.misses == poolBefore.misses)
        #expect(device.pool.statistics.hits == poolBefore.hits)
        // The launches really ran: 1 + 500 on the whole buffer, plus 500 more inside the view.
        let out = try data.toArray()
        #expect(out[0] == 501)
        #expect(out[1000] == 1001)
        #expect(out[5999] == 1001)
        #expect(out[6000] == 501)
    }

    @Test("a kernel that throws fails its launch with the error, and the device stays usable")
    func kernelError() async throws {
        let device = try makeCPUDevice()
        struct Boom: Error {}
        let failing = KernelSource(name: "failing") { context in
            if context.groups.contains(0) { throw Boom() }
        }
        let kernel = try device.compile(failing)
        for n in [10, 1_000_000] {  // inline and split across cores
            let error = await bridgeError { try await device.launch(kernel, .covering(n), arguments: []) }
            #expect(error?.description.contains("failing") == true)
        }
        #expect(try await VectorAddRun.run(Float.self, count: 1000, on: device).mismatches == 0)
    }

    @Test("completions: many waiters, retained owners released after completion")
    func completion() async throws {
        final class Owner: Sendable {}
        weak var weakOwner: Owner?
        let completion: Completion
        do {
            let owner = Owner()
            weakOwner = owner
            completion = Completion(retaining: [owner])
        }
        #expect(weakOwner != nil)
        #expect(!completion.isComplete)
        async let first = completion.wait()
        async let second = completion.wait()
        completion.complete(.success(ExecutionTimings(queued: 1, submitted: 2, start: 3, end: 13)))
        completion.complete(.failure(.notFound(kind: "x", name: "ignored")))  // only the first counts
        let (a, b) = try await (first, second)
        #expect(a?.duration == .nanoseconds(10))
        #expect(b == a)
        #expect(weakOwner == nil)
        let failed = Completion()
        failed.complete(.failure(.notFound(kind: "kernel", name: "k")))
        #expect(await bridgeError { try await failed.wait() } == .notFound(kind: "kernel", name: "k"))
    }

    @Test("a completion is complete while what it retained is released: a pending one still holds it all")
    func completeBeforeRelease() {
        /// What the witness saw when it was released: nil before.
        final class Seen: Sendable { let isComplete = Mutex<Bool?>(nil) }
        /// Records, as it is released, whether its completion already reported itself complete.
        final class Witness: Sendable {
            let completion: Completion
            let seen: Seen
            init(_ completion: Completion, _ seen: Seen) {
                self.completion = completion
                self.seen = seen
            }
            deinit { seen.isComplete.withLock { $0 = completion.isComplete } }
        }
        let seen = Seen()
        let completion = Completion()
        completion.retain([Witness(completion, seen)])
        #expect(!completion.isComplete)
        #expect(seen.isComplete.withLock { $0 } == nil)
        completion.complete(.success(nil))
        #expect(seen.isComplete.withLock { $0 } == true)
        #expect(completion.isComplete)
    }

    @Test("multi-dimensional launches visit every work-item once")
    func multiDimensional() async throws {
        let device = try makeCPUDevice()
        let width = 300, height = 200
        let kernel = try device.compile(
            KernelSource(name: "grid") { context in
                let out = try context.buffer(0, as: Int32.self)
                let w = try context.integer(1), h = try context.integer(2)
                context.forEachWorkItem { x, y, _ in
                    if x < w && y < h { out[y * w + x] += Int32(x + 1000 * y) }
                }
            })
        let out = try device.makeBuffer(copying: [Int32](repeating: 0, count: width * height))
        try await device.launch(
            kernel, Launch(groups: Extent3(19, 13), groupSize: Extent3(16, 16)),
            arguments: [.buffer(out), .int32(Int32(width)), .int32(Int32(height))])
        let values = try out.toArray()
        var bad = 0
        for y in 0..<height { for x in 0..<width where values[y * width + x] != Int32(x + 1000 * y) { bad += 1 } }
        #expect(bad == 0)
    }
}

@Suite("Launch lifetimes")
struct LaunchLifetimeTests {
    @Test("buffers dropped right after enqueue stay allocated until the launch completes")
    func enqueueRetainsBuffers() async throws {
        let device = try makeCPUDevice()
        let kernel = try device.compile(addConstantKernel)
        // A gate holds the device's queue, so the launch below is certainly still pending when its buffer is dropped.
        let gate = DispatchSemaphore(value: 0)
        let hold = try device.compile(KernelSource(name: "gate", scheduling: .perGroup) { _ in gate.wait() })
        let held = try device.enqueue(hold, Launch(groups: Extent3(1), groupSize: Extent3(1)), arguments: [])
        let n = 4_000_000
        var completion: Completion?
        var region: DeviceRegion?
        do {
            let data = try device.makeBuffer(of: Float.self, count: n)
            region = data.raw.region
            completion = try device.enqueue(
                kernel, .covering(n), arguments: [.buffer(data), .float(1), .int32(Int32(n))])
        }
        // The caller's last reference is gone; the pool must not have the block back while the launch is pending.
        #expect(completion?.isComplete == false)
        #expect(device.pool.statistics.blocksInUse == 1)
        let other = try device.makeBuffer(of: Float.self, count: n)
        #expect(other.raw.region != region)
        gate.signal()
        try await held.wait()
        try await completion?.wait()
        completion = nil
        // The completing thread lets go of the launch's buffers just after resuming its waiters.
        var spins = 0
        while device.pool.statistics.blocksInUse != 1 && spins < 100_000 { await Task.yield(); spins += 1 }
        #expect(device.pool.statistics.blocksInUse == 1)  // `other` only
    }
}
