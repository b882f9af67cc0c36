import Dispatch
import Synchronization

/// The CPU device's in-order queue: every launch, copy and fill runs after every command enqueued before it, as on a
/// CUDA stream or an in-order OpenCL queue.
///
/// Commands run one at a time; a command may use all cores inside itself (a large launch splits its work-groups
/// across them). When the queue is idle, a small command runs on the enqueuing thread before `enqueue` returns (a
/// hand-off to a worker would cost more than the command); otherwise it is appended and the queue's worker (a serial
/// Dispatch queue, never a cooperative thread) runs it in turn. Whoever finds the queue idle takes responsibility for
/// it (`busy`); when that runner is done and commands have arrived meanwhile, it hands them to the worker, so no
/// command waits behind a thread that has returned.
///
/// Ownership: the backend owns its queue; queued commands own what they capture until they have run. Thread safety:
/// any thread may enqueue. Cost: one lock per command; a queued command adds one Dispatch hand-off per burst.
final class CPUCommandQueue: Sendable {
    typealias Command = @Sendable () -> Void

    private struct State: Sendable {
        var pending: [Command?] = []
        var head = 0
        /// Someone (an inline runner or the worker) is running commands and will run or hand off what is pending.
        var busy = false

        var isEmpty: Bool { head == pending.count }

        mutating func pop() -> Command? {
            guard head < pending.count else { return nil }
            let command = pending[head]
            pending[head] = nil
            head += 1
            if head == pending.count {
                pending.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 64, head * 2 >= pending.count {
                pending.removeFirst(head)
                head = 0
            }
            return command
        }
    }

    private enum Action {
        case runInline
        case startWorker
        case none
    }

    private let state = Mutex(State())
    private let worker: DispatchQueue

    init(label: String) {
        worker = DispatchQueue(label: label, qos: .userInitiated)
    }

    /// Runs `command` after every command enqueued before it. When the queue is idle and `inline` is true, it runs
    /// on the calling thread before this returns; otherwise it is queued for the worker.
    func enqueue(inline: Bool, _ command: @escaping Command) {
        let action = state.withLock { s -> Action in
            if !s.busy {
                s.busy = true
                if inline { return .runInline }
                s.pending.append(command)
                return .startWorker
            }
            s.pending.append(command)
            return .none
        }
        switch action {
        case .runInline:
            command()
            finishInline()
        case .startWorker:
            worker.async { self.drain() }
        case .none:
            break
        }
    }

    /// Runs `command` after every command enqueued before it and returns when it has run: on the calling thread when
    /// the queue is idle, else on the worker while the caller blocks (a synchronous copy, like `cuMemcpy`). Never
    /// call it from inside a command: the worker would wait for itself.
    func performAndWait(_ command: @escaping Command) {
        let runNow = state.withLock { s -> Bool in
            guard !s.busy else { return false }
            s.busy = true
            return true
        }
        if runNow {
            command()
            finishInline()
            return
        }
        let done = DispatchSemaphore(value: 0)
        enqueue(inline: false) {
            command()
            done.signal()
        }
        done.wait()
    }

    /// Runs `command` on the calling thread and returns true when the queue is idle (nothing queued or running, so
    /// the command is in order); returns false without running it otherwise. Never call it from inside a command.
    func performIfIdle(_ command: () -> Void) -> Bool {
        let runNow = state.withLock { s -> Bool in
            guard !s.busy else { return false }
            s.busy = true
            return true
        }
        guard runNow else { return false }
        command()
        finishInline()
        return true
    }

    /// Whether nothing is queued or running.
    var isIdle: Bool { state.withLock { !$0.busy } }

    /// After an inline command: hands what arrived meanwhile to the worker, or marks the queue idle.
    private func finishInline() {
        let more = state.withLock { s -> Bool in
            if s.isEmpty {
                s.busy = false
                return false
            }
            return true
        }
        if more { worker.async { self.drain() } }
    }

    /// The worker's loop: runs pending commands in order until none is left.
    private func drain() {
        while let command = state.withLock({ s -> Command? in
            if let command = s.pop() { return command }
            s.busy = false
            return nil
        }) {
            command()
        }
    }
}
