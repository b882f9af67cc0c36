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
    private let health: CUDAHealth
    private let free = Mutex<[CUHandle]>([])

    init(context: CUDAContext, health: CUDAHealth) {
        self.context = context
        self.health = health
    }

    /// A free event; the caller has made the context current. `CUDA_ERROR_OUT_OF_MEMORY` is `outOfMemory`.
    func take() throws(GPUBridgeError) -> CUHandle {
        if let event = free.withLock({ $0.popLast() }) { return event }
        var event: OpaquePointer?
        try health.check(context.driver.cuEventCreate(&event, CU.eventBlockingSync), "cuEventCreate")
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

/// The stream a command is enqueued on, and how many of its driver calls were accepted: a command of several calls
/// (a fill, a staged copy) that fails half-way still has its first calls queued, and must still be waited for.
/// Used only inside `CUDAStreamLane.submit`'s body, on the submitting thread.
final class CUDACommand {
    let stream: OpaquePointer?
    private let health: CUDAHealth
    private(set) var issued = 0

    init(stream: OpaquePointer?, health: CUDAHealth) {
        self.stream = stream
        self.health = health
    }

    /// Checks one enqueueing driver call's status: throws on failure, counts it on success.
    func issue(_ status: CU.Result, _ call: @autoclosure () -> String) throws(GPUBridgeError) {
        try health.check(status, call())
        issued += 1
    }
}

/// An event recorded after some work on a lane; `CUDAStreamLane.wait(_:)` waits for it and recycles it.
struct CUDALaneMark: Sendable {
    let event: CUHandle
}

/// One non-blocking stream of a device and the thread that reports its completions.
///
/// `submit` records a start event, enqueues the command, records an end event and hands (events, `Completion`) to
/// the lane's completion thread, all under one lock so the thread's order is the stream's order. The completion
/// thread waits with `cuEventSynchronize` (blocking only itself), reads `cuEventElapsedTime` and completes the
/// `Completion`, which resumes any waiting task. Swift's cooperative threads never block on the device. Nothing
/// that can block runs under the lock: copies from and to pageable memory are staged through page-locked blocks by
/// the backend before they get here.
///
/// A command whose driver calls fail after some were accepted is not thrown away: its end event is still recorded,
/// and its `Completion` fails with the error once the accepted part has finished, so the buffers it touches stay
/// retained until then.
///
/// Ownership: the backend's runtime holds its lanes; pending completion jobs hold their lane, so a lane outlives its
/// work. When the last reference goes, the completion thread destroys the events and the stream after every pending
/// job and ends. Thread safety: any thread may submit. Cost per command: two `cuEventRecord`s, one lock, one job.
final class CUDAStreamLane: Sendable {
    let index: Int
    let context: CUDAContext
    let stream: CUHandle
    private let health: CUDAHealth
    private let events: CUDAEventPool
    private let worker: CUDAWorkerThread
    /// Serialises start-record / command / end-record / job hand-off on this stream.
    private let submission = Mutex<Void>(())

    init(context: CUDAContext, index: Int, ordinal: Int, health: CUDAHealth) throws(GPUBridgeError) {
        self.index = index
        self.context = context
        self.health = health
        let driver = context.driver
        try context.makeCurrent()
        var stream: OpaquePointer?
        try health.check(driver.cuStreamCreate(&stream, CU.streamNonBlocking), "cuStreamCreate")
        self.stream = CUHandle(stream)
        events = CUDAEventPool(context: context, health: health)
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
    /// completes with device timings once the end event has passed. `retaining` stays alive until then. `deliver`
    /// runs on the completion thread after the work has finished and before the completion completes (a staged
    /// device-to-host copy moves its bytes to the caller's memory there). `label` names the command in errors.
    ///
    /// Throws when nothing of the command was enqueued; when some of it was, returns a completion that fails with the
    /// error after that part has finished.
    func submit(
        _ label: String, retaining: [any Sendable] = [], deliver: (@Sendable () -> Void)? = nil,
        _ body: (CUDACommand) throws(GPUBridgeError) -> Void
    ) throws(GPUBridgeError) -> Completion {
        let driver = context.driver
        try health.ensureUsable()
        try context.makeCurrent()
        let start = try events.take()
        let end: CUHandle
        do { end = try events.take() } catch { events.give(start); throw error }
        let completion = Completion(retaining: retaining)
        do {
            try submission.withLock { _ throws(GPUBridgeError) in
                try health.check(driver.cuEventRecord(start.pointer, stream.pointer), "cuEventRecord")
                let failure = try issue(body)
                try health.check(driver.cuEventRecord(end.pointer, stream.pointer), "cuEventRecord")
                worker.submit { [self, failure] in
                    let result = finish(label, start: start, end: end)
                    if let failure {
                        completion.complete(.failure(failure))
                    } else {
                        if case .success = result { deliver?() }
                        completion.complete(result)
                    }
                }
            }
        } catch {
            events.give(start, end)
            throw error
        }
        return completion
    }

    /// Runs `body` on the stream (the caller holds the submission lock). Throws when none of its driver calls was
    /// accepted; returns the error when some were (that part is queued and must still be waited for), else nil.
    private func issue(_ body: (CUDACommand) throws(GPUBridgeError) -> Void) throws(GPUBridgeError) -> GPUBridgeError? {
        let command = CUDACommand(stream: stream.pointer, health: health)
        do {
            try body(command)
            return nil
        } catch {
            if command.issued == 0 { throw error }
            return error
        }
    }

    /// Runs on the completion thread: waits for `end`, reads the elapsed time, recycles both events. A fault that
    /// ended the context is reported as `deviceLost` with the first such error seen on the device (`CUDAHealth`).
    private func finish(_ label: String, start: CUHandle, end: CUHandle) -> Result<ExecutionTimings?, GPUBridgeError> {
        let driver = context.driver
        defer { events.give(start, end) }
        let status = driver.cuEventSynchronize(end.pointer)
        guard status == CU.success else {
            return .failure(health.failure(status, "cuEventSynchronize", label))
        }
        var milliseconds: Float = 0
        guard driver.cuEventElapsedTime(&milliseconds, start.pointer, end.pointer) == CU.success else {
            return .success(nil)  // the command finished; only its timing is unavailable
        }
        // The driver measures the time between the two events, not timestamps: only the duration is known.
        let nanoseconds = Int64(max(0, (Double(milliseconds) * 1_000_000).rounded()))
        return .success(ExecutionTimings(duration: .nanoseconds(nanoseconds)))
    }

    /// Enqueues `body`'s work followed by an event, without a completion: for synchronous copies, whose caller waits
    /// with `wait(_:)`. Nothing blocks under the lock.
    func enqueueMarked(_ body: (CUDACommand) throws(GPUBridgeError) -> Void) throws(GPUBridgeError) -> CUDALaneMark {
        let driver = context.driver
        try health.ensureUsable()
        try context.makeCurrent()
        let done = try events.take()
        do {
            try submission.withLock { _ throws(GPUBridgeError) in
                let failure = try issue(body)
                try health.check(driver.cuEventRecord(done.pointer, stream.pointer), "cuEventRecord")
                if let failure {
                    // A failure path: part of it is queued, so wait for that part before the caller, told of the
                    // error, reuses the memory it named.
                    _ = driver.cuEventSynchronize(done.pointer)
                    throw failure
                }
            }
        } catch {
            events.give(done)
            throw error
        }
        return CUDALaneMark(event: done)
    }

    /// Blocks the calling thread until `mark` has passed, then recycles its event. For synchronous copies only.
    func wait(_ mark: CUDALaneMark, _ label: @autoclosure () -> String) throws(GPUBridgeError) {
        try context.makeCurrent()
        defer { events.give(mark.event) }
        let status = context.driver.cuEventSynchronize(mark.event.pointer)
        guard status == CU.success else { throw health.failure(status, "cuEventSynchronize", label()) }
    }
}
