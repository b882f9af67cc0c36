import Logging
import Synchronization

/// Picks a device for each request and guards devices that keep failing.
///
/// - **Choice**: backends in the caller's preference order; within a backend, the device with the fewest requests in
///   flight (running plus waiting for a slot), then the most memory this process has not reserved
///   (`totalMemory - pool.bytesReserved`, a cheap estimate that needs no driver call). A device whose probe is due
///   (below) comes before both.
/// - **Concurrency**: at most `maxConcurrentLaunches` requests run on a device at once; more wait in FIFO order for a
///   slot (suspended, not blocking a thread).
/// - **Circuit breaker**: after `failureThreshold` consecutive failures the device's circuit opens and it gets no
///   traffic; once `probeInterval` has passed, one request is let through as a probe (half-open): success closes the
///   circuit, failure opens it again.
/// - **Lost devices**: a device whose backend reports it lost (`Device.lostReason`: a fault ended its context) gets
///   no traffic at all, without waiting for the threshold and without probes; its circuit reads `lost`.
///
/// Thread safety: all state is under one lock; any task may call any method.
public final class DeviceBroker: Sendable {
    /// How the broker treats devices.
    public struct Policy: Sendable, Hashable {
        public var maxConcurrentLaunches: Int
        public var failureThreshold: Int
        public var probeInterval: Duration

        public init(maxConcurrentLaunches: Int = 8, failureThreshold: Int = 3, probeInterval: Duration = .seconds(5)) {
            self.maxConcurrentLaunches = maxConcurrentLaunches
            self.failureThreshold = failureThreshold
            self.probeInterval = probeInterval
        }
    }

    /// A device's circuit.
    public enum Circuit: String, Sendable, Hashable, Codable {
        case closed, open, halfOpen = "half-open"
        /// The device reported a fault that ended its context (`Device.lostReason`); it never gets traffic again.
        case lost
    }

    /// One device as the broker sees it.
    public struct DeviceState: Sendable, Hashable, Codable {
        public var device: DeviceID
        public var running: Int
        public var waiting: Int
        public var succeeded: Int
        public var failed: Int
        public var consecutiveFailures: Int
        public var circuit: Circuit
        public var unreservedMemory: Int
    }

    /// A slot on a device, held while a request runs; give it back with `release(_:succeeded:)`.
    public struct Lease: Sendable {
        public let device: Device
        let index: Int
        let probe: Bool
    }

    private struct Entry {
        var running = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        var succeeded = 0
        var failed = 0
        var consecutiveFailures = 0
        var openedAt: ContinuousClock.Instant?
        var probing = false
    }

    public let devices: [Device]
    public let policy: Policy
    private let state: Mutex<[Entry]>
    private let clock = ContinuousClock()
    private let logger = Logger(label: "gpubridge.broker")

    public init(devices: [Device], policy: Policy = Policy()) throws(GPUBridgeError) {
        guard policy.maxConcurrentLaunches >= 1 else {
            throw .invalidArgument(
                name: "maxConcurrentLaunches", value: String(policy.maxConcurrentLaunches), limit: "1...\(Int.max)")
        }
        guard policy.failureThreshold >= 1 else {
            throw .invalidArgument(
                name: "failureThreshold", value: String(policy.failureThreshold), limit: "1...\(Int.max)")
        }
        guard policy.probeInterval >= .zero else {
            throw .invalidArgument(name: "probeInterval", value: "\(policy.probeInterval)", limit: "zero or more")
        }
        self.devices = devices
        self.policy = policy
        self.state = Mutex([Entry](repeating: Entry(), count: devices.count))
    }

    /// The state of every device, in `devices` order.
    public var states: [DeviceState] {
        let now = clock.now
        return state.withLock { entries in
            entries.indices.map { i in
                let e = entries[i]
                return DeviceState(
                    device: devices[i].id, running: e.running, waiting: e.waiters.count, succeeded: e.succeeded,
                    failed: e.failed, consecutiveFailures: e.consecutiveFailures,
                    circuit: devices[i].lostReason != nil ? .lost : circuit(e, now: now),
                    unreservedMemory: unreserved(i))
            }
        }
    }

    private func circuit(_ e: Entry, now: ContinuousClock.Instant) -> Circuit {
        guard let opened = e.openedAt else { return .closed }
        return now - opened >= policy.probeInterval ? .halfOpen : .open
    }

    private func unreserved(_ i: Int) -> Int {
        devices[i].info.totalMemory - devices[i].pool.statistics.bytesReserved
    }

    /// Chooses a device of one of `backends` (in that order) not in `excluding`, with its circuit closed or ready to
    /// be probed, and takes a slot on it (waiting for one if the device is busy). Nil when no device qualifies.
    public func acquire(backends: [BackendKind], excluding: Set<DeviceID> = [], footprint: Int = 0) async -> Lease? {
        let now = clock.now
        let chosen: (index: Int, probe: Bool, wait: Bool)? = state.withLock { entries in
            for backend in backends {
                var best: (index: Int, load: Int, memory: Int, probe: Bool)?
                for i in devices.indices where devices[i].id.backend == backend && !excluding.contains(devices[i].id) {
                    let e = entries[i]
                    if devices[i].lostReason != nil { continue }
                    let c = circuit(e, now: now)
                    if c == .open || (c == .halfOpen && e.probing) { continue }
                    let memory = unreserved(i)
                    if footprint > 0, memory < footprint, devices[i].pool.statistics.bytesCached < footprint {
                        continue
                    }
                    let load = e.running + e.waiters.count, probe = c == .halfOpen
                    // A probe that is due goes first: were it left to load and memory, a healed device would stay
                    // out of service for as long as the others have spare slots.
                    if let b = best, (b.probe ? 1 : 0, -b.load, b.memory) >= (probe ? 1 : 0, -load, memory) {
                        continue
                    }
                    best = (i, load, memory, probe)
                }
                if let best {
                    if best.probe { entries[best.index].probing = true }
                    let wait = entries[best.index].running >= policy.maxConcurrentLaunches
                    if !wait { entries[best.index].running += 1 }
                    return (best.index, best.probe, wait)
                }
            }
            return nil
        }
        guard let chosen else { return nil }
        if chosen.wait {
            // Suspend until a finishing request hands its slot over (release increments `running` for us).
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { entries -> Bool in
                    if entries[chosen.index].running < policy.maxConcurrentLaunches {
                        entries[chosen.index].running += 1
                        return true
                    }
                    entries[chosen.index].waiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        return Lease(device: devices[chosen.index], index: chosen.index, probe: chosen.probe)
    }

    /// Gives a slot back and records the outcome. `countsAsFailure` false for errors that say nothing about the
    /// device's health (a kernel that does not compile there, an unsupported feature).
    public func release(_ lease: Lease, succeeded: Bool, countsAsFailure: Bool = true) {
        let now = clock.now
        let (next, opened) = state.withLock { entries -> (CheckedContinuation<Void, Never>?, Bool) in
            var e = entries[lease.index]
            var opened = false
            if lease.probe { e.probing = false }
            if succeeded {
                e.succeeded += 1
                e.consecutiveFailures = 0
                e.openedAt = nil
            } else {
                e.failed += 1
                if countsAsFailure {
                    e.consecutiveFailures += 1
                    if lease.probe || e.consecutiveFailures >= policy.failureThreshold {
                        if e.openedAt == nil || lease.probe { opened = true }
                        e.openedAt = now
                    }
                }
            }
            var next: CheckedContinuation<Void, Never>?
            if !e.waiters.isEmpty {
                next = e.waiters.removeFirst()  // the slot passes straight to the next waiter
            } else {
                e.running -= 1
            }
            entries[lease.index] = e
            return (next, opened)
        }
        if opened {
            logger.warning(
                "circuit opened", metadata: ["device": "\(lease.device.id)", "threshold": "\(policy.failureThreshold)"])
        }
        next?.resume()
    }
}
