import Glibc
import GPUBridge
import Synchronization

/// Reusable CUDA events of one context (created with `CU_EVENT_BLOCKING_SYNC`, timing enabled, so a thread that
/// waits on one sleeps instead of spinning).
///
/// An event goes back to the pool only after the event it belongs with has been waited for, so a recycled event is
/// never still pending. Thread safety: any thread. Cost: a lock and an array pop; `cuEventCreate` only when empty.
final class CUDAEventPool: Sendable {
    private let context: CUDAContext
    private let free = Mutex<[CUHandle]>([])

    init(context: CUDAContext) { self.context = context }

    /// A free event; the caller has made the context current.
    func take() throws(GPUBridgeError) -> CUHandle {
        if let event = free.withLock({ $0.popLast() }) { return event }
        var event: OpaquePointer?
        try context.driver.check(context.driver.cuEventCreate(&event, CU.eventBlockingSync), "cuEventCreate")
        return CUHandle(event)
    }

    func give(_ events: CUHandle...) {
        free.withLock { $0.append(contentsOf: events) }
    }

    /// Destroys every pooled event; called on a worker thread once nothing uses them.
    func destroyAll() {
        let events = free.withLock { pool -> [CUHandle] in
            defer { pool.removeAll() }
            return pool
        }
        for event in events { _ = context.driver.cuEventDestroy(event.pointer) }
    }
}

/// One non-blocking stream of a device and the thread that reports its completions.
///
/// `submit` records a start event, enqueues the command, records an end event and hands (events, `Completion`) to
/// the lane's completion thread, all under one lock so the thread's order is the stream's order. The completion
/// thread waits with `cuEventSynchronize` (blocking only itself), reads `cuEventElapsedTime` and completes the
/// `Completion`, which resumes any waiting task. Swift's cooperative threads never block on the device.
///
/// Ownership: the backend holds its lanes; pending completion jobs hold their lane, so a lane outlives its work.
/// When the last reference goes, the completion thread destroys the events and the stream after every pending job
/// and ends. Thread safety: any thread may submit. Cost per command: two `cuEventRecord`s, one lock, one job.
final class CUDAStreamLane: Sendable {
    let index: Int
    let context: CUDAContext
    let stream: CUHandle
    private let events: CUDAEventPool
    private let worker: CUDAWorkerThread
    /// Serialises start-record / command / end-record / job hand-off on this stream.
    private let submission = Mutex<Void>(())

    init(context: CUDAContext, index: Int, ordinal: Int) throws(GPUBridgeError) {
        self.index = index
        self.context = context
        let driver = context.driver
        try context.makeCurrent()
        var stream: OpaquePointer?
        try driver.check(driver.cuStreamCreate(&stream, CU.streamNonBlocking), "cuStreamCreate")
        self.stream = CUHandle(stream)
        events = CUDAEventPool(context: context)
        do {
            worker = try CUDAWorkerThread(name: "cuda\(ordinal)-done\(index)") { [context] in
                // A dedicated thread: the context stays current for its whole life.
                _ = try? context.makeCurrent()
            }
        } catch {
            _ = driver.cuStreamDestroy(stream)
            throw .backendFailure(
                backend: "cuda", call: "pthread_create", code: Int(error.code),
                message: "could not start the completion thread of stream \(index) on cuda:\(ordinal)")
        }
    }

    deinit {
        // Every job that used the lane held it, so nothing is pending on the stream any more.
        let driver = context.driver
        let stream = stream
        let events = events
        let context = context
        worker.stop {
            _ = try? context.makeCurrent()
            events.destroyAll()
            _ = driver.cuStreamDestroy(stream.pointer)
        }
    }

    /// Enqueues `body`'s work on the stream between two events and returns a `Completion` that the completion thread
    /// completes with device timings once the end event has passed. `retaining` stays alive until then. `label`
    /// names the command in errors.
    func submit(
        _ label: String, retaining: [any Sendable] = [],
        _ body: (OpaquePointer?) throws(GPUBridgeError) -> Void
    ) throws(GPUBridgeError) -> Completion {
        let driver = context.driver
        try context.makeCurrent()
        let start = try events.take()
        let end: CUHandle
        do { end = try events.take() } catch { events.give(start); throw error }
        let completion = Completion(retaining: retaining)
        do {
            try submission.withLock { _ throws(GPUBridgeError) in
                try driver.check(driver.cuEventRecord(start.pointer, stream.pointer), "cuEventRecord")
                try body(stream.pointer)
                try driver.check(driver.cuEventRecord(end.pointer, stream.pointer), "cuEventRecord")
                worker.submit { [self] in
                    completion.complete(finish(label, start: start, end: end))
                }
            }
        } catch {
            events.give(start, end)
            throw error
        }
        return completion
    }

    /// Runs on the completion thread: waits for `end`, reads the elapsed time, recycles both events.
    private func finish(_ label: String, start: CUHandle, end: CUHandle) -> Result<ExecutionTimings?, GPUBridgeError> {
        let driver = context.driver
        defer { events.give(start, end) }
        let status = driver.cuEventSynchronize(end.pointer)
        guard status == CU.success else {
            return .failure(driver.failure(status, "cuEventSynchronize", "\(label) failed on the device"))
        }
        var milliseconds: Float = 0
        guard driver.cuEventElapsedTime(&milliseconds, start.pointer, end.pointer) == CU.success else {
            return .success(nil)  // the command finished; only its timing is unavailable
        }
        // The driver measures the time between the two events, not timestamps: only the duration is known.
        let nanoseconds = Int64(max(0, (Double(milliseconds) * 1_000_000).rounded()))
        return .success(ExecutionTimings(duration: .nanoseconds(nanoseconds)))
    }

    /// Enqueues `body`'s work and blocks the calling thread until it has finished (synchronous copies). Only the
    /// caller waits; the lock is not held while waiting.
    func perform(_ body: (OpaquePointer?) throws(GPUBridgeError) -> Void) throws(GPUBridgeError) {
        let driver = context.driver
        try context.makeCurrent()
        let done = try events.take()
        defer { events.give(done) }
        try submission.withLock { _ throws(GPUBridgeError) in
            try body(stream.pointer)
            try driver.check(driver.cuEventRecord(done.pointer, stream.pointer), "cuEventRecord")
        }
        try driver.check(driver.cuEventSynchronize(done.pointer), "cuEventSynchronize")
    }
}
