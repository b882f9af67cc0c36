import Dispatch
import Glibc
import GPUBridge
import GPUBridgeTestSupport
import Synchronization
import Testing

/// Sets its flag when its last reference goes, so a test can tell when that happened.
private final class Tracked: Sendable {
    let flag: Flag
    init(_ flag: Flag) { self.flag = flag }
    deinit { flag.set() }
}

/// Signals `started` when its release begins and sets `flag` 50 ms later: a slow release that leaves a window in which
/// a waiter can arrive.
private final class SlowRelease: Sendable {
    let started: DispatchSemaphore
    let flag: Flag
    init(started: DispatchSemaphore, flag: Flag) {
        self.started = started
        self.flag = flag
    }
    deinit {
        started.signal()
        usleep(50_000)
        flag.set()
    }
}

private final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

@Suite("Device health: completions release first, aligned arguments, out of memory beyond allocation, lost devices")
struct DeviceHealthTests {
    @Test("a completion lets go of what it retained before any waiter resumes")
    func completionReleasesBeforeResuming() async throws {
        for _ in 0..<200 {
            let flag = Flag()
            let completion = Completion(retaining: [Tracked(flag)])
            let waiter = Task { () -> Bool in
                _ = try? await completion.wait()
                return flag.isSet
            }
            await Task.yield()
            DispatchQueue.global().async { completion.complete(.success(nil)) }
            #expect(await waiter.value, "a waiter resumed while the completion still held what it retained")
        }
    }

    @Test("a waiter that arrives while the completion is releasing waits for the release too")
    func lateWaiterWaitsForRelease() async throws {
        for _ in 0..<20 {
            let flag = Flag()
            let started = DispatchSemaphore(value: 0)
            let completion = Completion(retaining: [SlowRelease(started: started, flag: flag)])
            DispatchQueue.global().async { completion.complete(.success(nil)) }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async {
                    started.wait()
                    continuation.resume()
                }
            }
            // Usually the release is still sleeping here; whenever this runs, the wait must not end before it did.
            _ = try await completion.wait()
            #expect(flag.isSet, "a waiter resumed while the completion was still releasing")
            #expect(completion.isComplete)
        }
    }

    @Test("a buffer's bytes are back in the pool right after its launch's await")
    func poolIsExactAfterAwait() async throws {
        let device = try Device(backend: CPUBackend())
        let catalog = KernelCatalog()
        let kernel = try catalog.kernel("vector_add", on: device)
        let before = device.pool.statistics.bytesInUse
        for _ in 0..<50 {
            let a = try device.makeBuffer(copying: [Float](repeating: 1, count: 4096))
            let b = try device.makeBuffer(copying: [Float](repeating: 2, count: 4096))
            let c = try device.makeBuffer(of: Float.self, count: 4096)
            let completion = try device.enqueue(
                kernel, .covering(4096), arguments: [.buffer(a.raw), .buffer(b.raw), .buffer(c.raw), .int32(4096)])
            _ = consume a
            _ = consume b
            _ = consume c
            try await completion.wait()
            #expect(device.pool.statistics.bytesInUse == before)
        }
    }

    @Test("a view that is not aligned to its element type is refused as a kernel argument, naming it")
    func misalignedViewRefused() async throws {
        let device = try Device(backend: CPUBackend())
        let kernel = try KernelCatalog().kernel("vector_add", on: device)
        let a = try device.makeBuffer(copying: [Float](repeating: 1, count: 64))
        let b = try device.makeBuffer(copying: [Float](repeating: 2, count: 64))
        let c = try device.makeBuffer(of: Float.self, count: 64)
        let odd = try a.raw.view(offset: 2, byteCount: 4 * 32)
        #expect {
            _ = try device.enqueue(
                kernel, .covering(32), arguments: [.buffer(odd), .buffer(b.raw), .buffer(c.raw), .int32(32)])
        } throws: { error in
            guard case let .invalidArgument(name, value, limit) = error as? GPUBridgeError else { return false }
            return name.contains("argument 0 ('a')") && value.contains("byte offset 2") && limit.contains("4 bytes")
        }
        // An aligned view of the same buffer runs.
        let aligned = try a.raw.view(offset: 8, byteCount: 4 * 32)
        try await device.launch(
            kernel, .covering(32), arguments: [.buffer(aligned), .buffer(b.raw), .buffer(c.raw), .int32(32)])
        #expect(try c.toArray(count: 32) == [Float](repeating: 3, count: 32))
    }

    @Test("out of memory in a launch (the driver's own memory, not a buffer) trims the pool and retries once")
    func outOfMemoryBeyondAllocationRetries() async throws {
        let backend = FaultInjectingBackend(wrapping: CPUBackend(), plan: .init(outOfMemory: [.launch: [1, 3, 4]]))
        let device = try Device(backend: backend)
        // A cached segment for the trim to give back.
        do { _ = try device.makeBuffer(of: Float.self, count: 1 << 20) }
        let cached = device.pool.statistics.bytesCached
        #expect(cached > 0)
        let kernel = try KernelCatalog().kernel("vector_add", on: device)
        let a = try device.makeBuffer(copying: [Float](repeating: 1, count: 16))
        let c = try device.makeBuffer(of: Float.self, count: 16)
        try await device.launch(
            kernel, .covering(16), arguments: [.buffer(a.raw), .buffer(a.raw), .buffer(c.raw), .int32(16)])
        #expect(try c.toArray() == [Float](repeating: 2, count: 16))  // launch 1 failed, launch 2 ran
        #expect(device.pool.statistics.trimsForSpace == 1)
        #expect(device.pool.statistics.bytesReserved < cached + device.pool.statistics.bytesInUse)
        // Launches 3 and 4 both fail: the error carries the pool's figures and names the launch.
        #expect {
            _ = try device.enqueue(
                kernel, .covering(16), arguments: [.buffer(a.raw), .buffer(a.raw), .buffer(c.raw), .int32(16)])
        } throws: { error in
            guard case let .outOfMemory(_, requested, inUse, _, _, detail) = error as? GPUBridgeError else {
                return false
            }
            return requested == 0 && inUse == device.pool.statistics.bytesInUse
                && detail.contains("launching 'vector_add'")
        }
        #expect(backend.injected(.launch) == 3)
        #expect(device.pool.statistics.trimsForSpace == 2)
    }

    @Test("out of memory in a copy or a fill (the driver's events and staging) trims the pool and retries once")
    func outOfMemoryInCopiesRetries() async throws {
        let backend = FaultInjectingBackend(wrapping: CPUBackend(), plan: .init(outOfMemory: [.copy: [1, 3, 4]]))
        let device = try Device(backend: backend)
        do { _ = try device.makeBuffer(of: Float.self, count: 1 << 20) }  // a cached segment to trim
        let buffer = try device.makeBuffer(of: Int32.self, count: 1024)
        try await buffer.fill(7)  // copy call 1 fails, the retry (call 2) fills
        #expect(device.pool.statistics.trimsForSpace == 1)
        #expect {
            try buffer.copy(from: [Int32](repeating: 1, count: 1024))  // calls 3 and 4 both fail
        } throws: { error in
            guard case let .outOfMemory(_, requested, _, _, _, detail) = error as? GPUBridgeError else { return false }
            return requested == 0 && detail.contains("a copy into")
        }
        #expect(try buffer.toArray() == [Int32](repeating: 7, count: 1024))
        #expect(backend.injected(.copy) == 3 && device.pool.statistics.trimsForSpace == 2)
    }

    @Test("a lost device gets no more traffic: its circuit reads lost and requests go to the next device")
    func lostDeviceIsAvoided() async throws {
        let lost = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 0))
        let healthy = CPUBackend(ordinal: 1)
        let bridge = try Bridge(
            options: options {
                $0.failureThreshold = 1_000
                $0.attemptsPerDevice = 3
            }, backends: [lost, healthy])
        // Both serve while healthy.
        let warm = await runRequests(64, width: 8, through: bridge, operation: countingVectorAdd(Tally()))
        #expect(warm.allSatisfy { (try? $0.get()) != nil })
        lost.lose("CUDA_ERROR_ILLEGAL_ADDRESS reported by cuEventSynchronize (test)")
        #expect(bridge.broker.devices[0].lostReason?.contains("ILLEGAL_ADDRESS") == true)
        #expect(bridge.broker.states[0].circuit == .lost)
        let launchesBefore = lost.calls(.launch)
        let completions = Tally()
        let outcomes = await runRequests(500, width: 16, through: bridge, operation: countingVectorAdd(completions))
        #expect(
            outcomes.enumerated().allSatisfy { i, outcome in (try? outcome.get()).map { isAnswer($0, to: i) } ?? false }
        )
        #expect(lost.calls(.launch) == launchesBefore, "a lost device was given work")
        #expect(completions.snapshot.count == 500 && completions.snapshot.values.allSatisfy { $0 == 1 })
        // Used directly, it refuses with the first reason.
        let device = bridge.broker.devices[0]
        #expect {
            _ = try device.makeBuffer(of: Float.self, count: 1 << 20)
        } throws: { error in
            guard case let .deviceLost(id, reason) = error as? GPUBridgeError else { return false }
            return id == device.id.description && reason.contains("ILLEGAL_ADDRESS")
        }
    }
}
