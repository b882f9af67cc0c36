import Distributed
import Foundation
import GPUBridge
import Synchronization

/// Where an activation is in its life.
public enum ActivationPhase: String, Sendable, Hashable, Codable {
    case inactive, activating, active, deactivating
}

/// The lifecycle bookkeeping of one virtual actor instance. Used from the owning actor's isolation only; the lock
/// makes it `Sendable` (the protocol hands it across its requirement) and costs an uncontended lock per step.
public final class ActivationLifecycle: Sendable {
    struct State {
        var phase: ActivationPhase = .inactive
        /// Calls running now (after their activation completed).
        var inFlight = 0
        /// Tasks waiting for the phase to leave `activating` or `deactivating`.
        var waiters: [CheckedContinuation<Void, Never>] = []
        /// Deactivations waiting for the calls in flight to finish.
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
        /// The one idle timer of this activation, if armed. It is armed when the last call in flight ends and no timer
        /// exists, and it ends itself when it finds a call in flight; calls never create or cancel it.
        var idleTimer: Task<Void, Never>?
        /// When the last call in flight ended.
        var idleSince = ContinuousClock.now
        var activations = 0
        /// Calls that entered an active activation, over every activation of this instance.
        var calls = 0
        /// When the latest of them started (wall clock, for people to read).
        var lastCall: Date?
        /// Those that ended by throwing.
        var failedCalls = 0
        /// Total time of the calls that ended, in nanoseconds (monotonic clock).
        var callNanoseconds = 0
        /// The journal of a durable actor, once it has activated.
        var journal: ActorJournal?
    }

    let state = Mutex(State())

    public init() {}

    /// Activations of this instance so far.
    public var activations: Int { state.withLock { $0.activations } }
    /// The current phase.
    public var phase: ActivationPhase { state.withLock { $0.phase } }
    /// Calls so far (over every activation), calls running now, when the latest started, how many threw, and the
    /// total time of those that ended (nanoseconds); one lock.
    public var callFigures: CallFigures {
        state.withLock {
            CallFigures(
                calls: $0.calls, inFlight: $0.inFlight, lastCall: $0.lastCall, failed: $0.failedCalls,
                nanoseconds: $0.callNanoseconds)
        }
    }

    /// The journal figures of a durable actor (nil for other actors, and before the first activation).
    public var journalStatistics: JournalStatistics? {
        state.withLock { $0.journal }?.statistics
    }

    /// Records the journal a durable actor's activation writes to, for `journalStatistics`.
    func attach(journal: ActorJournal) {
        state.withLock { $0.journal = journal }
    }

    /// An activation's call counts at one moment (`callFigures`). A value; any thread.
    public struct CallFigures: Sendable, Hashable {
        public var calls: Int
        public var inFlight: Int
        public var lastCall: Date?
        public var failed: Int
        public var nanoseconds: Int
    }

    /// Resumes every task waiting for a phase change.
    func setPhase(_ phase: ActivationPhase) {
        let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.phase = phase
            if phase == .active || phase == .inactive {
                defer { s.waiters = [] }
                return s.waiters
            }
            return []
        }
        for w in woken { w.resume() }
    }

    deinit { state.withLock { $0.idleTimer?.cancel() } }
}

/// A distributed actor with a virtual lifecycle: created on first use by the `EmbeddedActorSystem` directory,
/// activated by its first call (`activate`: place on a device, allocate, restore state), deactivated after
/// `options.idleTimeout` without calls (`deactivate`: snapshot, release device memory), activated again by the next call.
///
/// Each distributed method wraps its body in `withActivation { ... }`, which runs the activation once (concurrent
/// first calls wait for the same one), counts the call in flight and re-arms the idle timer when the last call ends.
public protocol VirtualActor: DistributedActor where ActorSystem == EmbeddedActorSystem {
    /// Lifecycle state; implement as `public let lifecycle = ActivationLifecycle()`.
    var lifecycle: ActivationLifecycle { get }
    /// Activation hook: choose a device, allocate, upload the restored state. Returns the device the activation
    /// lives on (nil if it holds no device memory). On error the actor stays inactive and the call fails.
    func activate() async throws -> DeviceID?
    /// Deactivation hook: snapshot the state, then release device memory. On error the actor stays active.
    func deactivate() async throws
}

extension VirtualActor {
    /// Runs `body` as one call of an active activation, activating first if needed.
    public func withActivation<T>(_ body: () async throws -> T) async throws -> T {
        try await ensureActive()
        let now = Date()
        let started = ContinuousClock.now
        lifecycle.state.withLock { s in
            s.inFlight += 1
            s.calls += 1
            s.lastCall = now
        }
        var failed = true
        defer {
            let elapsed = ContinuousClock.now - started
            lifecycle.state.withLock { s in
                s.callNanoseconds += Int(elapsed.nanoseconds)
                if failed { s.failedCalls += 1 }
            }
            callEnded()
        }
        let result = try await body()
        failed = false
        return result
    }

    /// Runs `body` as a call of the current activation if the actor is active now (it does not activate); nil if not.
    func whileActive<T>(_ body: () async throws -> T) async throws -> T? {
        let entered = lifecycle.state.withLock { s -> Bool in
            guard s.phase == .active else { return false }
            s.inFlight += 1
            return true
        }
        guard entered else { return nil }
        defer { callEnded() }
        return try await body()
    }

    private func callEnded() {
        let (drained, idle) = lifecycle.state.withLock { s -> ([CheckedContinuation<Void, Never>], Bool) in
            s.inFlight -= 1
            guard s.inFlight == 0 else { return ([], false) }
            defer { s.drainWaiters = [] }
            return (s.drainWaiters, s.phase == .active)
        }
        for w in drained { w.resume() }
        if idle { armIdleTimer() }
    }

    private func waitForPhaseChange() async {
        await withCheckedContinuation { c in lifecycle.state.withLock { $0.waiters.append(c) } }
    }

    /// Activates once; concurrent callers wait for the same activation (or for a deactivation to finish first).
    func ensureActive() async throws {
        while true {
            switch lifecycle.phase {
            case .active:
                return
            case .activating, .deactivating:
                await waitForPhaseChange()
            case .inactive:
                lifecycle.setPhase(.activating)
                do {
                    let device = try await activate()
                    lifecycle.state.withLock { $0.activations += 1 }
                    actorSystem.recordActivation(id, device: device, lifecycle: lifecycle)
                    actorSystem.logger.debug(
                        "activated", metadata: ["actor": "\(id)", "device": "\(device.map(\.description) ?? "none")"])
                    lifecycle.setPhase(.active)
                    return
                } catch {
                    actorSystem.recordActivationFailure(id)
                    lifecycle.setPhase(.inactive)
                    throw error
                }
            }
        }
    }

    /// Deactivates now: new calls wait, calls in flight finish, then the deactivation hook runs.
    public func deactivateNow() async throws {
        try await deactivateNow(using: { try await self.deactivate() })
    }

    /// Deactivates now with `hook` in place of `deactivate()`.
    func deactivateNow(using hook: () async throws -> Void) async throws {
        while lifecycle.phase == .activating || lifecycle.phase == .deactivating {
            await waitForPhaseChange()
        }
        guard lifecycle.phase == .active else { return }
        lifecycle.setPhase(.deactivating)
        lifecycle.state.withLock { s in
            s.idleTimer?.cancel()
            s.idleTimer = nil
        }
        while lifecycle.state.withLock({ $0.inFlight }) > 0 {
            await withCheckedContinuation { c in lifecycle.state.withLock { $0.drainWaiters.append(c) } }
        }
        do {
            try await hook()
            actorSystem.recordDeactivation(id)
            actorSystem.logger.debug("deactivated", metadata: ["actor": "\(id)"])
            lifecycle.setPhase(.inactive)
        } catch {
            actorSystem.logger.error(
                "deactivation failed; the activation stays", metadata: ["actor": "\(id)", "error": "\(error)"])
            lifecycle.setPhase(.active)
            armIdleTimer()
            throw error
        }
    }

    /// Marks the activation idle from now and starts the idle timer if none runs. The timer (real time, not simulated
    /// work) sleeps until `idleTimeout` after the last call ended; it deactivates the actor if it is still idle then,
    /// sleeps again if a call came and went meanwhile, and ends (to be armed again by the next idle moment) if a call
    /// is in flight. So a call costs a lock, not a task created and cancelled.
    private func armIdleTimer() {
        let timeout = actorSystem.options.idleTimeout
        lifecycle.state.withLock { s in
            s.idleSince = ContinuousClock.now
            guard s.idleTimer == nil else { return }
            let lifecycle = lifecycle
            s.idleTimer = Task { [weak self] in
                var wait = timeout
                while true {
                    do { try await Task.sleep(for: wait) } catch { return }
                    let next = lifecycle.state.withLock { s -> Duration? in
                        guard s.phase == .active, s.inFlight == 0 else {
                            s.idleTimer = nil
                            return nil
                        }
                        let idle = ContinuousClock.now - s.idleSince
                        if idle >= timeout {
                            s.idleTimer = nil  // this task runs the deactivation now: it must not be cancelled by it
                            return .zero
                        }
                        return timeout - idle
                    }
                    guard let next else { return }
                    if next > .zero {
                        wait = next
                        continue
                    }
                    guard let self else { return }
                    _ = try? await self.whenLocal { local in try await local.idleTimerFired(timeout: timeout) }
                    return
                }
            }
        }
    }

    /// Deactivates if the activation is still idle for `timeout` (a call may have slipped in before this ran).
    private func idleTimerFired(timeout: Duration) async throws {
        let idle = lifecycle.state.withLock { s -> Bool in
            s.inFlight == 0 && s.phase == .active && ContinuousClock.now - s.idleSince >= timeout
        }
        // Not idle: a call is in flight or came and went after the timer ended; the end of that call armed (or will
        // arm) a new timer.
        guard idle else { return }
        try await deactivateNow()
    }
}
