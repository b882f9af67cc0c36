import Foundation
import GPUBridge
import GPUBridgeActors
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Per-call settings of cluster calls, set for a scope with `withValue`.
public enum ClusterCall {
    /// The deadline of the calls made in this scope (default: `ClusterOptions.callTimeout`).
    @TaskLocal public static var timeout: Duration?
}

/// Settings of a cluster node or client; `validate()` rejects nonsense.
public struct ClusterOptions: Sendable {
    public enum Role: String, Sendable {
        /// Hosts activations, has a membership row, answers probes and probes others.
        case node
        /// Only calls actors hosted by nodes; no row, no server.
        case client
    }

    public var role: Role = .node
    /// The address to listen on (a node) and to advertise in the membership table. Port 0 picks a free port.
    public var host = "127.0.0.1"
    public var port = 0
    /// How often a node writes IAmAlive, reads the table and probes its successors.
    public var probeInterval: Duration = .seconds(1)
    /// How long a probe may take.
    public var probeTimeout: Duration = .seconds(1)
    /// Probes missed in a row before a node votes its successor suspect (Orleans: NumMissedProbesLimit).
    public var missedProbesLimit = 3
    /// How many successors on the ring each node probes (Orleans: NumProbedSilos).
    public var probedSuccessors = 3
    /// Votes that declare a node dead (Orleans: NumVotesForDeathDeclaration); fewer when fewer nodes are active.
    public var votesForDeath = 2
    /// Votes older than this are ignored.
    public var voteExpiry: Duration = .seconds(180)
    /// The deadline of a call when `ClusterCall.timeout` is not set.
    public var callTimeout: Duration = .seconds(30)
    /// When a call cannot reach its node: 0 fails it at once with `ClusterError.nodeUnreachable`; more retries it
    /// (every probe interval, after a fresh look at membership) until this much time has passed or the call's
    /// deadline comes, so a call placed on a node that died runs again on the activation's new node. Only for
    /// idempotent calls: the first attempt may have run.
    public var retryUnreachableFor: Duration = .zero
    /// Labels written to the membership row.
    public var labels: [String: String] = [:]
    /// Bytes a new activation is expected to need (placement skips nodes with less free device memory).
    public var activationFootprint = 0

    public init() {}

    public func validate() throws(GPUBridgeError) {
        guard (0...65_535).contains(port) else {
            throw .invalidArgument(name: "port", value: "\(port)", limit: "0...65535")
        }
        guard !host.isEmpty else { throw .invalidArgument(name: "host", value: "\"\"", limit: "an IPv4 address") }
        guard probeInterval >= .milliseconds(10), probeInterval <= .seconds(600) else {
            throw .invalidArgument(name: "probeInterval", value: "\(probeInterval)", limit: "10 ms...600 s")
        }
        guard probeTimeout > .zero, probeTimeout <= .seconds(600) else {
            throw .invalidArgument(
                name: "probeTimeout", value: "\(probeTimeout)", limit: "more than zero, at most 600 s")
        }
        guard (1...100).contains(missedProbesLimit) else {
            throw .invalidArgument(name: "missedProbesLimit", value: "\(missedProbesLimit)", limit: "1...100")
        }
        guard (1...16).contains(probedSuccessors) else {
            throw .invalidArgument(name: "probedSuccessors", value: "\(probedSuccessors)", limit: "1...16")
        }
        guard (1...16).contains(votesForDeath) else {
            throw .invalidArgument(name: "votesForDeath", value: "\(votesForDeath)", limit: "1...16")
        }
        // Votes come from the nodes that probe the suspect, `probedSuccessors` of them at most: more needed votes
        // than probers would never evict a dead node.
        guard votesForDeath <= probedSuccessors else {
            throw .invalidArgument(
                name: "votesForDeath", value: "\(votesForDeath)",
                limit: "at most probedSuccessors (\(probedSuccessors)): only that many nodes probe a node")
        }
        guard callTimeout > .zero, callTimeout <= .seconds(86_400) else {
            throw .invalidArgument(name: "callTimeout", value: "\(callTimeout)", limit: "more than zero, at most a day")
        }
        guard retryUnreachableFor >= .zero else {
            throw .invalidArgument(name: "retryUnreachableFor", value: "\(retryUnreachableFor)", limit: "zero or more")
        }
        guard activationFootprint >= 0 else {
            throw .invalidArgument(
                name: "activationFootprint", value: "\(activationFootprint)", limit: "zero or more bytes")
        }
    }
}

/// One member of a GPUBridge cluster: it hosts activations of the actor types registered with its
/// `EmbeddedActorSystem`, takes part in Orleans' membership protocol, and routes every call of its actor system to the
/// node that holds the activation (see docs/CLUSTER.md).
///
/// - **Membership**: on `start` the node inserts its row (Joining) and turns it Active, each a compare-and-swap on the
///   table version. Every `probeInterval` it writes IAmAlive (with its device capacity), reads the table, and probes
///   its `probedSuccessors` successors on a hash ring of the active nodes over the transport. After
///   `missedProbesLimit` missed probes in a row it votes the successor suspect; when the votes reach `votesForDeath`
///   (or the number of other active nodes, when smaller) the voter writes the row Dead. A node that reads its own row
///   as Dead stops: it serves nothing more and `run()` throws.
/// - **Directory and placement**: a call looks the actor up in the `ActorDirectory` (cached per node); when no live
///   activation is registered, it chooses a node with `CapacityPlacement` and registers there. The directory's atomic
///   register makes at most one activation per id in the cluster. An entry on a dead node is replaced, so the actor
///   reactivates elsewhere on its next call, restoring its last snapshot from the shared `ActorStorage`.
/// - **Calls**: each carries its `ActorAddress`; the receiving node runs it only if it holds (or the directory gives it)
///   that activation, else it answers `notHere` and the caller looks up again.
public final class ClusterNode: NodeCallHandler, ActorCallForwarder, Service {
    public let system: EmbeddedActorSystem
    public let membership: any MembershipTable
    public let directory: any ActorDirectory
    public let transport: any NodeTransport
    public let options: ClusterOptions
    let logger: Logger

    public enum Phase: String, Sendable {
        case created, joining, active, shuttingDown, stopped, dead
    }

    private struct State {
        var phase: Phase = .created
        var id: NodeID
        var view = MembershipSnapshot(entries: [], version: 0)
        var missed: [NodeID: Int] = [:]
        /// Activations this node holds, by id: the directory's activation number.
        var hosted: [GPUActorID: Int64] = [:]
        /// Where calls of this node last found each actor.
        var locations: [GPUActorID: ActorAddress] = [:]
        var cleaned: Set<NodeID> = []
        var callsInFlight = 0
        var agent: Task<Void, Never>?
        var deathWaiters: [CheckedContinuation<Void, Never>] = []
        /// Tasks in `waitForView`, resumed by the membership round whose view satisfies their condition.
        var viewWaiters: [UInt64: ViewWaiter] = [:]
        /// `waitForView` calls cancelled before they registered.
        var cancelledViewWaits: Set<UInt64> = []
        var nextViewWait: UInt64 = 0
    }

    struct ViewWaiter {
        let condition: @Sendable (MembershipSnapshot) -> Bool
        let continuation: CheckedContinuation<MembershipSnapshot?, Never>
    }

    private let state: Mutex<State>
    private let callCounter = Counter(label: "gpubridge_cluster_calls_total")
    private let failedCallCounter = Counter(label: "gpubridge_cluster_call_failures_total")
    private let servedCounter = Counter(label: "gpubridge_cluster_calls_served_total")
    private let probeFailures = Counter(label: "gpubridge_cluster_probe_failures_total")
    private let callTimer = Metrics.Timer(label: "gpubridge_cluster_call_duration")
    private let activationsGauge = Gauge(label: "gpubridge_cluster_activations")
    private let inFlightGauge = Gauge(label: "gpubridge_cluster_calls_in_flight")
    private let activeNodesGauge = Gauge(label: "gpubridge_cluster_active_nodes")

    public init(
        system: EmbeddedActorSystem, membership: any MembershipTable, directory: any ActorDirectory,
        transport: any NodeTransport, options: ClusterOptions = ClusterOptions(),
        logger: Logger = Logger(label: "gpubridge.cluster")
    ) throws(GPUBridgeError) {
        try options.validate()
        self.system = system
        self.membership = membership
        self.directory = directory
        self.transport = transport
        self.options = options
        self.logger = logger
        let generation = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let host = options.role == .node ? options.host : "client-\(ProcessInfo.processInfo.processIdentifier)"
        state = Mutex(State(id: NodeID(host: host, port: options.port, generation: generation)))
    }

    /// This node's id (its port is the bound one once `start` returned).
    public var id: NodeID { state.withLock { $0.id } }
    public var phase: Phase { state.withLock { $0.phase } }
    /// The membership table as last read.
    public var view: MembershipSnapshot { state.withLock { $0.view } }
    /// Activations this node holds now (id → activation number).
    public var hosted: [GPUActorID: Int64] { state.withLock { $0.hosted } }

    // MARK: Life cycle

    /// Starts serving (a node), joins the membership table (Joining, then Active), attaches this node as the actor
    /// system's forwarder and starts the membership agent. A client only reads the table.
    public func start() async throws {
        try state.withLock { s throws(ClusterError) in
            guard s.phase == .created else {
                throw .nodeNotRunning(node: "\(s.id)", state: "already \(s.phase.rawValue)")
            }
            s.phase = .joining
        }
        if options.role == .node {
            let port = try await transport.serve(self, at: id)
            state.withLock { $0.id.port = port }
            let now = Date()
            try await changeOwnRow { _ in
                MembershipEntry(
                    node: self.id, status: .joining, iAmAlive: now, startTime: now, capacity: self.capacity(),
                    labels: self.options.labels)
            }
            try await changeOwnRow { entry in
                var entry = entry ?? MembershipEntry(node: self.id, status: .active, iAmAlive: now, startTime: now)
                entry.status = .active
                entry.iAmAlive = Date()
                return entry
            }
        }
        _ = try await refreshView()
        system.attach(forwarder: self)
        state.withLock { s in
            s.phase = .active
            s.agent = Task { [weak self] in await self?.agentLoop() }
        }
        logger.info("cluster \(options.role.rawValue) started", metadata: ["node": "\(id)"])
    }

    /// Runs the node as a service: starts it, waits for a graceful shutdown (SIGTERM through a `ServiceGroup`) or its
    /// death, then stops. Throws `ClusterError.nodeNotRunning` when the cluster declared this node dead.
    public func run() async throws { try await run(onStarted: { _ in }) }

    /// `run()`, calling `onStarted` with the node's id (its bound port) once the node is active.
    public func run(onStarted: @Sendable (NodeID) -> Void) async throws {
        try await start()
        onStarted(id)
        let dead = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.untilDead(); return true
            }
            group.addTask {
                do { try await gracefulShutdown() } catch {}
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            self.wakeDeathWaiters()
            return first
        }
        if dead || phase == .dead {
            await transport.shutdown()
            throw ClusterError.nodeNotRunning(node: "\(id)", state: "declared dead by the cluster")
        }
        await stop()
    }

    /// Graceful stop: the row goes ShuttingDown, every activation is deactivated (its snapshot saved to storage) and
    /// unregistered from the directory, the row goes Dead, the transport closes.
    public func stop() async {
        let agent = state.withLock { s -> Task<Void, Never>? in
            guard s.phase == .active || s.phase == .joining else { return nil }
            s.phase = .shuttingDown
            return s.agent
        }
        guard phase == .shuttingDown else { return }
        agent?.cancel()
        await agent?.value
        if options.role == .node {
            do {
                try await changeOwnRow { e in
                    e.map {
                        var e = $0; e.status = .shuttingDown; return e
                    }
                }
            } catch {
                logger.error("could not mark this node ShuttingDown", metadata: ["error": "\(error)"])
            }
            let failures = await system.shutdown()
            for (id, error) in failures {
                logger.error(
                    "deactivation failed at shutdown; its last snapshot stays",
                    metadata: ["actor": "\(id)", "error": "\(error)"])
            }
            do { try await directory.unregisterAll(on: id) } catch {
                logger.error("could not unregister this node's activations", metadata: ["error": "\(error)"])
            }
            do {
                try await changeOwnRow { e in
                    e.map {
                        var e = $0; e.status = .dead; return e
                    }
                }
            } catch {
                logger.error("could not mark this node Dead", metadata: ["error": "\(error)"])
            }
        }
        state.withLock { s in
            s.phase = .stopped
            s.hosted = [:]
        }
        wakeDeathWaiters()
        await transport.shutdown()
        logger.info("cluster \(options.role.rawValue) stopped", metadata: ["node": "\(id)"])
    }

    private func untilDead() async {
        await withCheckedContinuation { c in
            let now = state.withLock { s -> Bool in
                if s.phase == .dead || s.phase == .stopped { return true }
                s.deathWaiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    private func wakeDeathWaiters() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            defer { s.deathWaiters = [] }
            return s.deathWaiters
        }
        for w in waiters { w.resume() }
    }

    /// Writes this node's row with a compare-and-swap on the table version, re-reading and retrying on conflicts.
    private func changeOwnRow(_ change: @Sendable (MembershipEntry?) -> MembershipEntry?) async throws {
        for _ in 0..<50 {
            let snapshot = try await membership.readAll()
            let current = snapshot.entry(of: id)
            guard let next = change(current?.entry) else { return }
            let ok: Bool
            if let current {
                ok = try await membership.update(next, etag: current.etag, expectedVersion: snapshot.version)
            } else {
                ok = try await membership.insert(next, expectedVersion: snapshot.version)
            }
            if ok { return }
        }
        throw ClusterError.nodeNotRunning(
            node: "\(id)", state: "the membership table kept changing: 50 conflicting writes in a row")
    }

    /// This node's devices and load, for placement.
    func capacity() -> NodeCapacity {
        let broker = system.bridge.broker
        let devices = zip(broker.devices, broker.states).map { device, s in
            NodeCapacity.DeviceSummary(
                id: s.device.description, backend: s.device.backend.rawValue, name: device.info.name,
                totalMemory: device.info.totalMemory, freeMemory: s.circuit == .open ? 0 : s.unreservedMemory)
        }
        return state.withLock { s in
            // Active instances only: an idle shell (deactivated, still in `hosted`) holds no device memory or load.
            NodeCapacity(devices: devices, activations: system.activeCount, callsInFlight: s.callsInFlight)
        }
    }

    // MARK: Membership agent

    private func agentLoop() async {
        while !Task.isCancelled, phase != .dead {
            do { try await Task.sleep(for: options.probeInterval) } catch { return }
            do { try await tick() } catch {
                logger.warning("membership round failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// One membership round: IAmAlive, read the table, handle deaths, probe successors, vote.
    func tick() async throws {
        if options.role == .node {
            try await membership.updateIAmAlive(id, at: Date(), capacity: capacity())
        }
        let snapshot = try await refreshView()
        let (activations, inFlight) = state.withLock { ($0.hosted.count, $0.callsInFlight) }
        activationsGauge.record(activations)
        inFlightGauge.record(inFlight)
        activeNodesGauge.record(snapshot.active.count)
        if options.role == .node, let own = snapshot.entry(of: id), own.entry.status == .dead, phase != .shuttingDown {
            logger.critical("the cluster declared this node dead; stopping", metadata: ["node": "\(id)"])
            state.withLock { $0.phase = .dead }
            wakeDeathWaiters()
            return
        }
        guard options.role == .node, phase == .active else { return }
        let successors = self.successors(in: snapshot)
        await withTaskGroup(of: (NodeID, Bool).self) { group in
            for node in successors {
                group.addTask {
                    do {
                        let answered = try await self.transport.ping(
                            node, from: "\(self.id)", timeout: self.options.probeTimeout)
                        return (node, answered == node)
                    } catch {
                        return (node, false)
                    }
                }
            }
            for await (node, ok) in group {
                let missed = state.withLock { s -> Int in
                    let missed = ok ? 0 : s.missed[node, default: 0] + 1
                    s.missed[node] = missed
                    return missed
                }
                if !ok {
                    probeFailures.increment()
                    logger.debug("probe missed", metadata: ["node": "\(node)", "missed": "\(missed)"])
                }
                if missed >= options.missedProbesLimit {
                    do { try await suspect(node) } catch {
                        logger.warning("could not vote", metadata: ["suspect": "\(node)", "error": "\(error)"])
                    }
                }
            }
        }
    }

    /// The next `probedSuccessors` active nodes after this one on the ring.
    func successors(in snapshot: MembershipSnapshot) -> [NodeID] {
        let me = id
        var ring = snapshot.entries.map(\.entry).filter { $0.status == .active || $0.status == .joining }.map(\.node)
        if !ring.contains(me) { ring.append(me) }
        ring.sort { (CapacityPlacement.ringPosition($0), $0) < (CapacityPlacement.ringPosition($1), $1) }
        guard let at = ring.firstIndex(of: me) else { return [] }
        var out: [NodeID] = []
        var i = (at + 1) % ring.count
        while i != at && out.count < options.probedSuccessors {
            out.append(ring[i])
            i = (i + 1) % ring.count
        }
        return out
    }

    /// Votes `suspect` dead; declares it dead when the votes are enough. A compare-and-swap on the table version.
    private func suspect(_ suspect: NodeID) async throws {
        for _ in 0..<5 {
            let snapshot = try await membership.readAll()
            guard let row = snapshot.entry(of: suspect), row.entry.status != .dead else { return }
            var entry = row.entry
            let now = Date()
            // Expired votes and votes of nodes that are dead themselves do not count (a node cut off from the others
            // votes them all suspect before it is declared dead; those votes must not outlive it).
            let voters = Set(snapshot.entries.map(\.entry).filter { $0.status != .dead }.map(\.node))
            entry.suspicions.removeAll {
                now.timeIntervalSince($0.time) > options.voteExpiry.seconds || !voters.contains($0.voter)
            }
            if !entry.suspicions.contains(where: { $0.voter == id }) {
                entry.suspicions.append(SuspicionVote(voter: id, time: now))
            }
            let others = snapshot.active.filter { $0.node != suspect }.count
            let needed = max(1, min(options.votesForDeath, others))
            let declare = entry.suspicions.count >= needed
            if declare { entry.status = .dead }
            if try await membership.update(entry, etag: row.etag, expectedVersion: snapshot.version) {
                if declare {
                    logger.warning(
                        "declared a node dead", metadata: ["node": "\(suspect)", "votes": "\(entry.suspicions.count)"])
                    _ = try? await refreshView()
                } else {
                    logger.info(
                        "voted a node suspect",
                        metadata: ["node": "\(suspect)", "votes": "\(entry.suspicions.count)/\(needed)"])
                }
                return
            }
        }
    }

    /// Reads the table; forgets connections and directory entries of nodes that died.
    @discardableResult
    func refreshView() async throws -> MembershipSnapshot {
        let snapshot = try await membership.readAll()
        let (newlyDead, satisfied) = state.withLock {
            s -> ([NodeID], [(CheckedContinuation<MembershipSnapshot?, Never>, MembershipSnapshot)]) in
            if snapshot.version >= s.view.version { s.view = snapshot }
            var satisfied: [(CheckedContinuation<MembershipSnapshot?, Never>, MembershipSnapshot)] = []
            for (key, waiter) in s.viewWaiters where waiter.condition(s.view) {
                s.viewWaiters[key] = nil
                satisfied.append((waiter.continuation, s.view))
            }
            let dead = snapshot.entries.map(\.entry).filter { $0.status == .dead && !s.cleaned.contains($0.node) }.map(
                \.node)
            for node in dead {
                s.cleaned.insert(node)
                s.missed[node] = nil
                s.locations = s.locations.filter { $0.value.node != node }
            }
            return (dead, satisfied)
        }
        for (continuation, view) in satisfied { continuation.resume(returning: view) }
        for node in newlyDead where node != id {
            transport.forget(node)
            if options.role == .node {
                let removed = (try? await directory.unregisterAll(on: node)) ?? 0
                if removed > 0 {
                    logger.info(
                        "removed a dead node's activations from the directory",
                        metadata: ["node": "\(node)", "activations": "\(removed)"])
                }
            }
        }
        return snapshot
    }

    /// Waits until this node's membership view satisfies `condition` (checked now and after each membership round,
    /// every `probeInterval`), without polling. Returns that view, or nil when `timeout` passes first or the task is
    /// cancelled. Any task may call it; it costs one lock per round while it waits.
    public func waitForView(
        timeout: Duration,
        until condition: @escaping @Sendable (MembershipSnapshot) -> Bool
    ) async -> MembershipSnapshot? {
        let key = state.withLock { s -> UInt64 in
            s.nextViewWait += 1
            return s.nextViewWait
        }
        return await withTaskGroup(of: MembershipSnapshot?.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<MembershipSnapshot?, Never>) in
                        let now = self.state.withLock { s -> MembershipSnapshot?? in
                            if s.cancelledViewWaits.remove(key) != nil { return .some(nil) }
                            if condition(s.view) { return .some(s.view) }
                            s.viewWaiters[key] = ViewWaiter(condition: condition, continuation: continuation)
                            return nil
                        }
                        if let now { continuation.resume(returning: now) }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { s -> ViewWaiter? in
                        guard let waiter = s.viewWaiters.removeValue(forKey: key) else {
                            s.cancelledViewWaits.insert(key)
                            return nil
                        }
                        return waiter
                    }
                    waiter?.continuation.resume(returning: nil)
                }
            }
            group.addTask {
                // The timeout: a real timer, cancelled as soon as the view satisfies the condition.
                try? await Task.sleep(for: timeout)
                return nil
            }
            // A key put in `cancelledViewWaits` (cancelled before it registered) is always taken out by that
            // registration, which still runs: the group waits for it.
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    private func isDead(_ node: NodeID) -> Bool {
        state.withLock { s in s.view.entry(of: node)?.entry.status == .dead }
    }

    // MARK: Calls (ActorCallForwarder)

    public func forward(_ call: ActorCall, to id: GPUActorID) async throws -> ActorReply {
        let timeout = ClusterCall.timeout ?? options.callTimeout
        guard timeout > .zero, timeout <= .seconds(86_400) else {
            throw GPUBridgeError.invalidArgument(
                name: "ClusterCall.timeout", value: "\(timeout)",
                limit: "more than zero, at most a day")
        }
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: timeout)
        callCounter.increment()
        defer { callTimer.recordNanoseconds(Int64((clock.now - start).nanoseconds)) }
        do {
            return try await forward(call, to: id, deadline: deadline, timeout: timeout, clock: clock)
        } catch {
            failedCallCounter.increment()
            throw error
        }
    }

    private func forward(
        _ call: ActorCall, to id: GPUActorID, deadline: ContinuousClock.Instant, timeout: Duration,
        clock: ContinuousClock
    ) async throws -> ActorReply {
        let retryUntil = clock.now.advanced(by: options.retryUnreachableFor)
        var notHereWait = Duration.milliseconds(20)  // doubles after each notHere, up to one probe interval
        while true {
            guard phase == .active || (phase == .shuttingDown && options.role == .client) else {
                throw ClusterError.nodeNotRunning(node: "\(self.id)", state: phase.rawValue)
            }
            // Finding the activation (the directory, perhaps a registration) counts against the deadline too.
            let left = deadline - clock.now
            guard left > .zero else {
                throw ClusterError.deadlineExceeded(actor: "\(id)", node: "(not located)", timeout: "\(timeout)")
            }
            let address = try await Self.within(left, actor: id, node: "(locating it in the directory)") {
                try await self.locate(id)
            }
            let remaining = deadline - clock.now
            guard remaining > .zero else {
                throw ClusterError.deadlineExceeded(actor: "\(id)", node: "\(address.node)", timeout: "\(timeout)")
            }
            let request = ClusterRequest(
                address: address, caller: "\(self.id)", timeoutNanoseconds: remaining.nanoseconds, call: call)
            let reply: ClusterReply
            do {
                if options.role == .node && address.node == self.id {
                    reply = try await Self.within(remaining, actor: id, node: "\(address.node)") {
                        await self.handle(request)
                    }
                } else if transport.enforcesDeadlines {
                    reply = try await transport.call(request, on: address.node, timeout: remaining)
                } else {
                    reply = try await Self.within(remaining, actor: id, node: "\(address.node)") {
                        try await self.transport.call(request, on: address.node, timeout: remaining)
                    }
                }
            } catch let error as ClusterError {
                guard case .nodeUnreachable = error else { throw error }
                forgetLocation(of: id)
                // A node that left gracefully (row Dead without suspicion votes) stopped serving only after its
                // activations were snapshotted and unregistered: the call never ran there, so it goes to the new one.
                if let row = (try? await refreshView())?.entry(of: address.node)?.entry, row.status == .dead,
                    row.suspicions.isEmpty,
                    clock.now < deadline
                {
                    continue
                }
                guard clock.now < retryUntil, clock.now < deadline else { throw error }
                logger.debug(
                    "node unreachable; retrying after a membership round",
                    metadata: ["actor": "\(id)", "node": "\(address.node)"])
                try await Task.sleep(for: options.probeInterval)
                _ = try? await refreshView()
                continue
            }
            switch reply {
            case let .reply(outcome):
                return outcome
            case let .notHere(reason):
                forgetLocation(of: id)
                logger.debug(
                    "not here", metadata: ["actor": "\(id)", "node": "\(address.node)", "reason": "\(reason)"])
                guard clock.now < deadline else {
                    throw ClusterError.notHere(actor: "\(id)", node: "\(address.node)", reason: reason)
                }
                // The registered node may be shutting down (it unregisters once the snapshot is saved): wait, longer
                // each time (20 ms doubling up to one probe interval), and never past the deadline.
                if try await directory.lookup(id) == address {
                    if isDead(address.node) {
                        try await directory.unregister(address)
                    } else {
                        try await Task.sleep(for: min(notHereWait, max(.zero, deadline - clock.now)))
                        notHereWait = min(notHereWait * 2, options.probeInterval)
                    }
                }
            }
        }
    }

    /// Runs `body`, or throws `deadlineExceeded` when `timeout` passes first, at once: `body` runs in a task of its own
    /// that is cancelled then, and whatever it does after (a body that ignores cancellation) is not waited for.
    /// Cancelling the caller cancels the body and throws `CancellationError`.
    static func within<T: Sendable>(
        _ timeout: Duration, actor: GPUActorID, node: String,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let race = DeadlineRace<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                race.start(
                    continuation,
                    work: Task {
                        do { race.finish(.success(try await body())) } catch { race.finish(.failure(error)) }
                    },
                    timer: Task {
                        do { try await Task.sleep(for: timeout) } catch { return }
                        race.finish(
                            .failure(
                                ClusterError.deadlineExceeded(
                                    actor: "\(actor)", node: node,
                                    timeout: "\(timeout)")))
                    })
                if Task.isCancelled { race.finish(.failure(CancellationError())) }
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }

    private func forgetLocation(of id: GPUActorID) { _ = state.withLock { $0.locations.removeValue(forKey: id) } }

    /// Where `id`'s activation is: the cached location, the directory's live entry, or a new registration on the node
    /// placement chooses.
    public func locate(_ id: GPUActorID) async throws -> ActorAddress {
        // A cached location on a node this view knows dead is dropped (it may have been cached by a lookup that raced
        // the membership round that saw the death).
        let cached = state.withLock { s -> ActorAddress? in
            guard let location = s.locations[id] else { return nil }
            guard !s.cleaned.contains(location.node) else {
                s.locations[id] = nil
                return nil
            }
            return location
        }
        if let cached { return cached }
        if let found = try await directory.lookup(id) {
            if !isDead(found.node) {
                state.withLock { $0.locations[id] = found }
                return found
            }
            try await directory.unregister(found)
        }
        let candidates = state.withLock { s in s.view.active.filter { !s.cleaned.contains($0.node) } }
        guard let chosen = CapacityPlacement(footprint: options.activationFootprint).choose(for: id, among: candidates)
        else {
            throw ClusterError.noActiveNodes(actor: "\(id)", reason: "the membership table lists no active node")
        }
        let registered = try await directory.register(id, on: chosen)
        if isDead(registered.node) {
            try await directory.unregister(registered)
            return try await locate(id)
        }
        state.withLock { $0.locations[id] = registered }
        return registered
    }

    // MARK: Serving (NodeCallHandler)

    public func handle(_ request: ClusterRequest) async -> ClusterReply {
        let address = request.address
        let me = id
        guard address.node == me else { return .notHere(reason: "this is node \(me), the call is for \(address.node)") }
        guard phase == .active else { return .notHere(reason: "node \(me) is \(phase.rawValue)") }
        let hosted = state.withLock { $0.hosted[address.id] }
        if hosted != address.activation {
            if let hosted {
                return .notHere(
                    reason: "node \(me) holds activation #\(hosted) of \(address.id), not #\(address.activation)")
            }
            let registered: ActorAddress?
            do { registered = try await directory.lookup(address.id) } catch {
                return .reply(.error(RemoteErrorEnvelope(error)))
            }
            guard registered == address else {
                return .notHere(
                    reason:
                        "the directory registers \(registered.map(\.description) ?? "no activation") for \(address.id)")
            }
            let accepted = state.withLock { s -> Bool in
                guard s.phase == .active else { return false }
                if let current = s.hosted[address.id] { return current == address.activation }
                s.hosted[address.id] = address.activation
                return true
            }
            guard accepted else {
                return .notHere(reason: "node \(me) is \(phase.rawValue) or holds another activation")
            }
        }
        servedCounter.increment()
        state.withLock { $0.callsInFlight += 1 }
        defer { state.withLock { $0.callsInFlight -= 1 } }
        let reply = await system.execute(request.call, on: address.id)
        if case .error = reply, system.lastActivationFailed(address.id) {
            // The activation failed here: give up the registration, so the next call places the actor anew instead
            // of failing on this node for ever.
            let released = state.withLock { s -> Bool in
                guard s.hosted[address.id] == address.activation else { return false }
                s.hosted[address.id] = nil
                s.locations[address.id] = nil
                return true
            }
            if released {
                do { try await directory.unregister(address) } catch {
                    logger.warning(
                        "could not unregister an activation that failed",
                        metadata: ["actor": "\(address.id)", "error": "\(error)"])
                }
            }
        }
        return .reply(reply)
    }

    public func ping(from prober: String) -> NodeID? {
        state.withLock { s in s.phase == .active || s.phase == .shuttingDown || s.phase == .joining ? s.id : nil }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}

/// The three-way race of `ClusterNode.within`: the body, the timer and the caller's cancellation each try to resume
/// the one continuation; the first wins, stops the timer and (if it is not the body) cancels the body.
final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        var timer: Task<Void, Never>?
        var result: Result<T, any Error>?
    }

    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<T, any Error>, work: Task<Void, Never>, timer: Task<Void, Never>) {
        let early = state.withLock { s -> Result<T, any Error>? in
            s.work = work
            s.timer = timer
            guard let result = s.result else {
                s.continuation = continuation
                return nil
            }
            return result
        }
        if let early {
            timer.cancel()
            if case .failure = early { work.cancel() }
            continuation.resume(with: early)
        }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, work, timer) = state.withLock {
            s -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?, Task<Void, Never>?) in
            guard s.result == nil else { return (nil, nil, nil) }
            s.result = result
            defer { s.continuation = nil }
            return (s.continuation, s.work, s.timer)
        }
        timer?.cancel()
        if case .failure = result { work?.cancel() }
        continuation?.resume(with: result)
    }
}
