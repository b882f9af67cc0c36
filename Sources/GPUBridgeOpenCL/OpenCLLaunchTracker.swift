import Dispatch
import GPUBridge
import Synchronization

/// Signals the completions of kernel launches with few event callbacks, each with its own launch's status.
///
/// A callback per launch costs a few microseconds of the driver's time (on PoCL it halved the launches a queue takes
/// per second). Launches go to one in-order queue, so when one launch has completed every launch before it has
/// ended too. Every launch asks the driver for its own event, but the tracker arms a `CL_COMPLETE` callback on only
/// some of them: the first launch when none is armed (so a lone launch is reported as soon as it ends) and then every
/// `armEvery`-th. A callback ends its launch and every earlier one: each is completed with the status and device times
/// read from its own event (OpenCL does not promise that a failed command shows on a later command's event, so no
/// launch is reported from another's status). An earlier event whose status is not final yet gets a callback of its
/// own. If launches are left with nothing armed after them, the last one is armed.
///
/// Ownership: the tracker holds the backend's queues (`OpenCLQueues`), and each armed callback and deferred worker
/// job holds the tracker, so nothing they touch is released under them. Thread safety: one lock over the queue of
/// pending launches; callbacks run on the driver's thread and make only non-blocking calls there
/// (`clGetEventInfo`, `clGetEventProfilingInfo`, `clRetainEvent`, `clReleaseEvent`, `clSetEventCallback`, `clFlush`).
final class OpenCLLaunchTracker: Sendable {
    private struct Entry: Sendable {
        let sequence: UInt64
        /// The launch's own event; the entry holds one reference until the launch is reported.
        let event: CLObject
        let completion: Completion
    }

    private struct State: Sendable {
        var pending: [Entry] = []
        var head = 0
        var next: UInt64 = 0
        var armed: Set<UInt64> = []
        var sinceArmed = 0
    }

    /// How many launches may pass between two armed callbacks.
    static let armEvery = 32

    private let state = Mutex(State())
    private let library: OpenCLLibrary
    private let queues: OpenCLQueues
    private let profiling: Bool

    init(queues: OpenCLQueues, profiling: Bool) {
        self.library = queues.library
        self.queues = queues
        self.profiling = profiling
    }

    /// What `enqueue` did.
    enum Outcome {
        /// The driver refused the launch with this status; nothing was enqueued.
        case refused(Int32)
        /// The launch is enqueued and tracked.
        case enqueued(Completion)
        /// The driver reported success but gave no event: the launch is enqueued but cannot be tracked. The queue has
        /// been finished, so nothing the launch uses is still in use.
        case untracked
    }

    /// Enqueues a launch with `enqueue` (given the event out-pointer) and tracks it. The enqueue and the tracking
    /// happen under one lock, so the tracker's order is the queue's order.
    func enqueue(_ enqueue: (UnsafeMutablePointer<OpaquePointer?>) -> Int32) -> Outcome {
        let completion = Completion()
        let (status, event, armedSequence) = state.withLock { s -> (Int32, OpaquePointer?, UInt64?) in
            var event: OpaquePointer?
            let status = enqueue(&event)
            guard status == CL.success, let event else { return (status, nil, nil) }
            let sequence = s.next
            s.next += 1
            s.pending.append(Entry(sequence: sequence, event: CLObject(event), completion: completion))
            guard s.armed.isEmpty || s.sinceArmed + 1 >= Self.armEvery else {
                s.sinceArmed += 1
                return (status, event, nil)
            }
            s.armed.insert(sequence)
            s.sinceArmed = 0
            // A reference for arming it below: a concurrent `finished` (after a `synchronize`) may report the entry and
            // release the entry's reference before then.
            _ = library.retainEvent(event)
            return (status, event, sequence)
        }
        guard status == CL.success else { return .refused(status) }
        guard let event else {
            _ = library.finish(queues.queue.pointer)
            return .untracked
        }
        if let armedSequence {
            register(event, sequence: armedSequence)
            _ = library.releaseEvent(event)
        }
        return .enqueued(completion)
    }

    /// The sequence number of the last launch tracked so far, or nil if none is pending.
    var lastPending: UInt64? {
        state.withLock { s in s.head < s.pending.count ? s.pending[s.pending.count - 1].sequence : nil }
    }

    /// Arms the callback of `event` (the caller holds a reference to it until this returns). If the driver refuses, a
    /// worker waits for the queue instead and reports what finished.
    private func register(_ event: OpaquePointer, sequence: UInt64) {
        _ = library.retainEvent(event)  // the callback's own reference, released when it has run
        let box = LaunchCallback(tracker: self, sequence: sequence, event: CLObject(event))
        let userData = Unmanaged.passRetained(box).toOpaque()
        if library.setEventCallback(event, CL.complete, openCLLaunchCallback, userData) == CL.success {
            _ = library.flush(queues.queue.pointer)  // submitted, so the callback can fire (and every launch before it)
        } else {
            Unmanaged<LaunchCallback>.fromOpaque(userData).release()
            _ = library.releaseEvent(event)
            finishLater(through: sequence)
        }
    }

    /// Every launch up to and including `sequence` has ended (an armed callback fired, or the queue was finished).
    func finished(through sequence: UInt64) {
        var done: [Entry] = []
        var rearm: (OpaquePointer, UInt64)?
        state.withLock { s in
            s.armed = s.armed.filter { $0 > sequence }
            while s.head < s.pending.count, s.pending[s.head].sequence <= sequence {
                done.append(s.pending[s.head])
                s.head += 1
            }
            if s.head > 256, s.head * 2 > s.pending.count {
                s.pending.removeFirst(s.head)
                s.head = 0
            }
            if s.head < s.pending.count, s.armed.isEmpty {
                // Launches are left with nothing armed after them: arm the last one; it ends after all of them.
                let last = s.pending[s.pending.count - 1]
                s.armed.insert(last.sequence)
                s.sinceArmed = 0
                _ = library.retainEvent(last.event.pointer)  // kept until armed, as in `enqueue`
                rearm = (last.event.pointer, last.sequence)
            }
        }
        for entry in done { report(entry) }
        if let (event, last) = rearm {
            register(event, sequence: last)
            _ = library.releaseEvent(event)
        }
    }

    /// Completes one launch that has ended with the status and times of its own event.
    private func report(_ entry: Entry) {
        let event = entry.event.pointer
        var status: Int32 = CL.complete
        let query = library.getEventInfo(event, CL.eventCommandExecutionStatus, MemoryLayout<Int32>.size, &status, nil)
        if query == CL.success, status > CL.complete {
            // Not final yet on this driver even though a later command of the in-order queue has ended: its own
            // callback reports it (and takes over the entry's reference to the event).
            let box = EventCompletion(
                completion: entry.completion, library: library,
                call: "clEnqueueNDRangeKernel", profiling: profiling, owner: nil)
            let userData = Unmanaged.passRetained(box).toOpaque()
            let armed = library.setEventCallback(event, CL.complete, openCLEventCallback, userData)
            if armed == CL.success { return }
            Unmanaged<EventCompletion>.fromOpaque(userData).release()
            _ = library.releaseEvent(event)
            entry.completion.complete(
                .failure(
                    .backendFailure(
                        backend: "opencl", call: "clSetEventCallback", code: Int(armed),
                        message:
                            "the launch's status could not be read (\(openCLStatusName(armed))); it is not reported as a success"
                    )))
            return
        }
        let result: Result<ExecutionTimings?, GPUBridgeError>
        if query != CL.success {
            result = .failure(
                .backendFailure(
                    backend: "opencl", call: "clGetEventInfo(CL_EVENT_COMMAND_EXECUTION_STATUS)", code: Int(query),
                    message:
                        "the launch's status could not be read (\(openCLStatusName(query))); it is not reported as a success"
                ))
        } else if status < 0 {
            result = .failure(.openCL("clEnqueueNDRangeKernel (command terminated)", status))
        } else {
            result = .success(profiling ? timings(of: event) : nil)
        }
        _ = library.releaseEvent(event)
        entry.completion.complete(result)
    }

    /// Last resort when no callback can be armed: a worker waits for the queue (`clFinish` may not be called from a
    /// callback), after which every launch up to `sequence` has ended. The job holds the tracker, and the tracker the
    /// queue, so the queue outlives the wait.
    private func finishLater(through sequence: UInt64) {
        DispatchQueue.global().async { [self] in
            _ = library.finish(queues.queue.pointer)
            finished(through: sequence)
        }
    }

    /// The launch's device times on a profiling queue, or nil where the driver does not report them.
    private func timings(of event: OpaquePointer) -> ExecutionTimings? {
        func read(_ parameter: UInt32) -> UInt64? {
            var value: UInt64 = 0
            return library.getEventProfilingInfo(event, parameter, MemoryLayout<UInt64>.size, &value, nil) == CL.success
                ? value : nil
        }
        guard let start = read(CL.profilingCommandStart), let end = read(CL.profilingCommandEnd) else { return nil }
        return ExecutionTimings(
            queued: read(CL.profilingCommandQueued), submitted: read(CL.profilingCommandSubmit),
            start: start, end: end)
    }
}

/// What an armed launch callback needs: its tracker, its place in the order, and the event reference it holds.
final class LaunchCallback: Sendable {
    let tracker: OpenCLLaunchTracker
    let sequence: UInt64
    let event: CLObject

    init(tracker: OpenCLLaunchTracker, sequence: UInt64, event: CLObject) {
        self.tracker = tracker
        self.sequence = sequence
        self.event = event
    }
}

/// The `CL_COMPLETE` callback of an armed launch: everything up to it has ended.
let openCLLaunchCallback: CLFunction.EventNotify = { _, _, userData in
    guard let userData else { return }
    let box = Unmanaged<LaunchCallback>.fromOpaque(userData).takeRetainedValue()
    box.tracker.finished(through: box.sequence)
    _ = box.tracker.releaseCallbackEvent(box.event)
}

extension OpenCLLaunchTracker {
    /// Releases the reference an armed callback held on its event.
    func releaseCallbackEvent(_ event: CLObject) -> Int32 { library.releaseEvent(event.pointer) }
}
