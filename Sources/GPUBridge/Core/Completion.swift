import Synchronization

/// What a backend measured of one command. Every field is a measurement; a field the backend cannot measure is nil,
/// never filled with a stand-in.
///
/// - OpenCL: `queued`, `submitted`, `start` and `end` from the event's profiling info, on the device's clock, in
///   nanoseconds; `duration` is `end - start`.
/// - CUDA: the driver gives the elapsed time between two events recorded around the command, not timestamps:
///   `duration` only, the four points are nil.
/// - CPU: `queued` (when the command entered the device's queue), `start` and `end` on the host's `CLOCK_MONOTONIC`;
///   `submitted` is nil (there is no hand-off to a separate device).
public struct ExecutionTimings: Sendable, Hashable, Codable {
    /// When the command was put in the queue.
    public var queued: UInt64?
    /// When the command was handed to the device.
    public var submitted: UInt64?
    /// When the device started it.
    public var start: UInt64?
    /// When the device finished it.
    public var end: UInt64?
    /// How long the device ran the command.
    public var duration: Duration

    /// Timings with a measured start and end (and, where measured, queue and submission times).
    public init(queued: UInt64? = nil, submitted: UInt64? = nil, start: UInt64, end: UInt64) {
        self.queued = queued
        self.submitted = submitted
        self.start = start
        self.end = end
        self.duration = .nanoseconds(end >= start ? Int64(clamping: end - start) : 0)
    }

    /// Timings where only the duration was measured (CUDA event pairs).
    public init(duration: Duration) {
        self.duration = duration
    }
}

/// A one-shot signal that a command a backend enqueued has finished, with its timings or its error.
///
/// Backends create one per enqueued command and call `complete(_:)` exactly once, from any thread (an OpenCL event
/// callback, a CUDA host function, a CPU worker). Any number of tasks may `await wait()`; waiting suspends the task and
/// never blocks a cooperative thread. Objects passed as `retaining` or to `retain(_:)` (host memory of an async copy,
/// the buffers of an enqueued launch) are kept alive until the command completes, then released by the completing
/// thread.
public final class Completion: Sendable {
    private enum State {
        case pending(
            waiters: [CheckedContinuation<Result<ExecutionTimings?, GPUBridgeError>, Never>],
            retained: [any Sendable])
        /// Finished; the completing thread is releasing what was retained. Waiters that arrive now still queue, so
        /// none resumes before the release.
        case releasing(
            result: Result<ExecutionTimings?, GPUBridgeError>,
            waiters: [CheckedContinuation<Result<ExecutionTimings?, GPUBridgeError>, Never>])
        case done(Result<ExecutionTimings?, GPUBridgeError>)
    }

    private let state: Mutex<State>

    /// A pending completion that keeps `retaining` alive until it completes.
    public init(retaining: [any Sendable] = []) {
        state = Mutex(.pending(waiters: [], retained: retaining))
    }

    /// A completion that has already finished.
    public init(finished result: Result<ExecutionTimings?, GPUBridgeError>) {
        state = Mutex(.done(result))
    }

    /// Marks the command finished. Only the first call counts; later calls are ignored.
    public func complete(_ result: Result<ExecutionTimings?, GPUBridgeError>) {
        var retained: [any Sendable] = []
        let claimed = state.withLock { state -> Bool in
            guard case let .pending(waiters, held) = state else { return false }
            state = .releasing(result: result, waiters: waiters)
            retained = held
            return true
        }
        guard claimed else { return }
        // Released here, on the completing thread, before any waiter resumes: a task that awaited the command sees
        // what it retained already let go (a buffer dropped by its caller is back in the pool, so `bytesInUse` is
        // exact right after the await). Backends complete from threads where that is allowed: the last release of a
        // buffer returns its block to the pool and may release an OpenCL sub-buffer (`clReleaseMemObject` is allowed
        // in an event callback); a backend whose retained objects must not be released on its callback thread
        // (pinned host memory) hands the completion to a worker itself.
        retained.removeAll()
        let waiters = state.withLock {
            state -> [CheckedContinuation<Result<ExecutionTimings?, GPUBridgeError>, Never>] in
            guard case let .releasing(_, waiters) = state else { return [] }
            state = .done(result)
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }

    /// Keeps `objects` alive until the command completes (at once released if it already has). Returns whether the
    /// command was still pending.
    @discardableResult
    public func retain(_ objects: [any Sendable]) -> Bool {
        state.withLock { state in
            guard case .pending(let waiters, var retained) = state else { return false }
            retained.append(contentsOf: objects)
            state = .pending(waiters: waiters, retained: retained)
            return true
        }
    }

    /// Whether the command has finished. True from the moment its result is known, while what it retained is being
    /// released and before its waiters resume: a command not complete still holds everything it retained.
    public var isComplete: Bool {
        state.withLock { if case .pending = $0 { return false } else { return true } }
    }

    /// Whether the command has finished, what it retained has been released and its waiters resumed (a backend
    /// that tracks completions drops only these, so a wait on the rest still covers their releases).
    package var isSettled: Bool {
        state.withLock { if case .done = $0 { return true } else { return false } }
    }

    /// Suspends until the command finishes; returns its device timings where the backend measured them.
    ///
    /// Cancelling the waiting task does not cancel the command: work on a device queue cannot be withdrawn, so the
    /// wait always lasts until the device is done.
    @discardableResult
    public func wait() async throws(GPUBridgeError) -> ExecutionTimings? {
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<ExecutionTimings?, GPUBridgeError>, Never>) in
            let ready: Result<ExecutionTimings?, GPUBridgeError>? = state.withLock { state in
                switch state {
                case let .done(result):
                    return result
                case .releasing(let result, var waiters):
                    waiters.append(continuation)
                    state = .releasing(result: result, waiters: waiters)
                    return nil
                case .pending(var waiters, let retained):
                    waiters.append(continuation)
                    state = .pending(waiters: waiters, retained: retained)
                    return nil
                }
            }
            if let ready { continuation.resume(returning: ready) }
        }
        return try result.get()
    }
}
