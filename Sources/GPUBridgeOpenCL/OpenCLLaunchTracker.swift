import Dispatch
import GPUBridge
import Synchronization

/// Signals the completions of kernel launches with few event callbacks.
///
/// A callback per launch costs a few microseconds of the driver's time (on PoCL it halved the launches a queue takes
/// per second). Launches go to one in-order queue, so when one launch has completed every launch before it has too.
/// The tracker keeps enqueued launches in order and arms a `CL_COMPLETE` callback on only some of them: the first
/// launch when none is armed (so a lone launch is reported as soon as it ends) and then every `armEvery`-th. A callback
/// completes its launch and every earlier one; if launches are left with nothing armed after them, it arms the last
/// one that has an event. Only armed launches ask the driver for an event (each event costs the driver bookkeeping),
/// so only they report device timings and their own status; the launches between them complete with no timings
/// when the next armed one ends. A lone launch (`Device.launch`, then wait) is always armed.
///
/// Thread safety: one lock over the queue of pending launches; callbacks run on the driver's thread and make only
/// non-blocking calls there (`clGetEventInfo`, `clGetEventProfilingInfo`, `clRetainEvent`, `clReleaseEvent`,
/// `clSetEventCallback`).
final class OpenCLLaunchTracker: Sendable {
    private struct Entry: Sendable {
        let sequence: UInt64
        /// The launch's event: only armed launches ask for one (an event costs the driver bookkeeping per command).
        let event: CLObject?
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
    private let queue: CLObject
    private let profiling: Bool

    init(library: OpenCLLibrary, queue: CLObject, profiling: Bool) {
        self.library = library
        self.queue = queue
        self.profiling = profiling
    }

    /// Enqueues a launch with `enqueue` (given an event out-pointer, or nil when this launch needs no event) and
    /// tracks it. The enqueue and the tracking happen under one lock, so the tracker's order is the queue's order.
    /// Returns the driver's status and, on success, the launch's completion.
    func enqueue(_ enqueue: (UnsafeMutablePointer<OpaquePointer?>?) -> Int32) -> (status: Int32, completion: Completion?) {
        let completion = Completion()
        let (status, armedEvent, sequence, isMarker) = state.withLock { s -> (Int32, OpaquePointer?, UInt64, Bool) in
            let arm = s.armed.isEmpty || s.sinceArmed + 1 >= Self.armEvery
            var event: OpaquePointer?
            let status = arm ? enqueue(&event) : enqueue(nil)
            guard status == CL.success else { return (status, nil, 0, false) }
            let sequence = s.next
            s.next += 1
            s.pending.append(Entry(sequence: sequence, event: event.map(CLObject.init), completion: completion))
            guard arm else {
                s.sinceArmed += 1
                return (status, nil, sequence, false)
            }
            s.armed.insert(sequence)
            s.sinceArmed = 0
            if let event { return (status, event, sequence, false) }
            // The driver gave no event for an armed launch: a marker right after it stands in.
            var marker: OpaquePointer?
            if library.enqueueMarkerWithWaitList(queue.pointer, 0, nil, &marker) == CL.success, let marker {
                return (status, marker, sequence, true)
            }
            s.armed.remove(sequence)
            return (status, nil, sequence, false)
        }
        guard status == CL.success else { return (status, nil) }
        if let armedEvent {
            register(armedEvent, sequence: sequence)
            if isMarker { _ = library.releaseEvent(armedEvent) }  // the callback holds its own reference
        } else if state.withLock({ $0.armed.isEmpty }) {
            finishLater(through: sequence)
        }
        return (status, completion)
    }

    /// The sequence number of the last launch tracked so far, or nil if none is pending.
    var lastPending: UInt64? {
        state.withLock { s in s.head < s.pending.count ? s.pending[s.pending.count - 1].sequence : nil }
    }

    /// Arms the callback of `event`. If the driver refuses, waits for the queue instead and reports what finished.
    private func register(_ event: OpaquePointer, sequence: UInt64) {
        _ = library.retainEvent(event)  // the callback's own reference, released when it has run
        let box = LaunchCallback(tracker: self, sequence: sequence, event: CLObject(event))
        let userData = Unmanaged.passRetained(box).toOpaque()
        if library.setEventCallback(event, CL.complete, openCLLaunchCallback, userData) == CL.success {
            _ = library.flush(queue.pointer)  // submitted, so the callback can fire (and every launch before it)
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
        var finishAll: UInt64?
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
                // Launches are left with nothing armed after them (the launches between armed ones have no event):
                // a marker after them, in the same in-order queue, ends when they have all ended.
                let last = s.pending[s.pending.count - 1].sequence
                var marker: OpaquePointer?
                if library.enqueueMarkerWithWaitList(queue.pointer, 0, nil, &marker) == CL.success, let marker {
                    s.armed.insert(last)
                    s.sinceArmed = 0
                    rearm = (marker, last)
                } else {
                    finishAll = last
                }
            }
        }
        for entry in done {
            if let event = entry.event {
                let result = outcome(of: event.pointer)
                _ = library.releaseEvent(event.pointer)
                entry.completion.complete(result)
            } else {
                // No event of its own: it ran before a launch that has ended, in the same in-order queue. A command
                // that terminates abnormally is reported on the next armed launch's event.
                entry.completion.complete(.success(nil))
            }
        }
        if let (marker, last) = rearm {
            register(marker, sequence: last)
            _ = library.releaseEvent(marker)  // the callback holds its own reference
        } else if let last = finishAll {
            finishLater(through: last)
        }
    }

    /// Last resort when no callback can be armed: a worker waits for the queue (`clFinish` may not be called from a
    /// callback), after which every launch up to `sequence` has ended.
    private func finishLater(through sequence: UInt64) {
        DispatchQueue.global().async { [self] in
            _ = library.finish(queue.pointer)
            finished(through: sequence)
        }
    }

    /// The launch's own status and, on a profiling queue, its device times.
    private func outcome(of event: OpaquePointer) -> Result<ExecutionTimings?, GPUBridgeError> {
        var status: Int32 = CL.complete
        _ = library.getEventInfo(event, CL.eventCommandExecutionStatus, MemoryLayout<Int32>.size, &status, nil)
        if status < 0 { return .failure(.openCL("clEnqueueNDRangeKernel (command terminated)", status)) }
        guard profiling else { return .success(nil) }
        func read(_ parameter: UInt32) -> UInt64? {
            var value: UInt64 = 0
            return library.getEventProfilingInfo(event, parameter, MemoryLayout<UInt64>.size, &value, nil) == CL.success ? value : nil
        }
        guard let queued = read(CL.profilingCommandQueued), let submitted = read(CL.profilingCommandSubmit),
              let start = read(CL.profilingCommandStart), let end = read(CL.profilingCommandEnd) else { return .success(nil) }
        return .success(ExecutionTimings(queued: queued, submitted: submitted, start: start, end: end))
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
