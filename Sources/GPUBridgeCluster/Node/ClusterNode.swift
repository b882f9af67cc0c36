import Foundation
import GPUBridge
import GPUBridgeActors
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// One member of a GPUBridge cluster: it hosts activations of the actor types registered with its
/// `EmbeddedActorSystem`, holds a lease in the membership table, and routes every call of its actor system to the
/// node that holds the activation (see docs/CLUSTER.md).
///
/// - **Membership by lease**: on `start` the node inserts its row (Joining, with a lease of `leaseDuration` by the
///   table's clock) and turns it Active. Every `roundInterval` it renews its lease (with its device capacity), writes
///   Dead every row whose lease ended (the table's clock is the one judge: no votes, no node's clock), and reads the
///   table. A node that cannot renew stops serving on its own once `servingWindow` has passed since its last
///   successful renewal began, before the table can expire it; a node that finds its row Dead or its lease ended
///   stops for good (`run()` throws).
/// - **Directory and placement**: a call looks the actor up in the `ActorDirectory` (cached per node); when no live
///   activation is registered, it chooses a node with `CapacityPlacement` and registers there (only a node with a live
///   lease can be registered). The directory's atomic register makes at most one activation per id; its activation
///   number is the fencing token the actor's storage claim carries (`ActivationFence`). An entry on a dead node is
///   replaced, so the actor reactivates elsewhere on its next call from the shared `ActorStorage`.
/// - **Calls**: each carries its `ActorAddress`; the receiving node runs it only if it holds (or the directory gives it)
///   that activation and its lease is current, else it answers `notHere` and the caller looks up again.
///
/// Owned by whoever started it (a `ServiceGroup`, a test); every method is safe from any task. Its state sits behind
/// one lock; each call it forwards costs a cache lookup (or a directory query) and one transport call.
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
        /// The local instant until which this node may serve: its last successful renewal's start + `servingWindow`.
        var servingUntil: ContinuousClock.Instant?
        /// Whether this node logged that it stopped serving for want of a renewal (cleared by the next renewal).
        var fenced = false
        /// Activations this node holds, by id: the directory's activation number.
        var hosted: [GPUActorID: Int64] = [:]
        /// Where calls of this node last found each actor.
        var locations: LocationCache
        /// Dead nodes whose connections and directory entries this node already dropped (pruned once their rows are
        /// removed from the table).
        var cleaned: Set<NodeID> = []
        var callsInFlight = 0
        /// `stop()` waiting for the calls in flight to finish.
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
        var agent: Task<Void, Never>?
        var rounds = 0
        /// The table read `sharedRefresh` callers wait for.
        var refreshing: Task<MembershipSnapshot, any Error>?
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
    private let clock = ContinuousClock()
    private let callCounter = Counter(label: "gpubridge_cluster_calls_total")
    private let failedCallCounter = Counter(label: "gpubridge_cluster_call_failures_total")
    private let servedCounter = Counter(label: "gpubridge_cluster_calls_served_total")
    private let renewalFailures = Counter(label: "gpubridge_cluster_lease_renewal_failures_total")
    private let expiredCounter = Counter(label: "gpubridge_cluster_leases_expired_total")
    private let callTimer = Metrics.Timer(label: "gpubridge_cluster_call_duration_seconds")
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
        state = Mutex(
            State(
                id: NodeID(host: host, port: options.port, generation: generation),
                locations: LocationCache(capacity: options.locationCacheSize)))
    }

    /// This node's id (its port is the bound one once `start` returned).
    public var id: NodeID { state.withLock { $0.id } }
    public var phase: Phase { state.withLock { $0.phase } }
    /// The membership table as last read.
    public var view: MembershipSnapshot { state.withLock { $0.view } }
    /// Activations this node holds now (id → activation number).
    public var hosted: [GPUActorID: Int64] { state.withLock { $0.hosted } }
    /// Actor locations cached now (at most `ClusterOptions.locationCacheSize`).
    public var cachedLocations: Int { state.withLock { $0.locations.count } }
    /// Whether this node may serve calls now: it is active (or draining a graceful stop) and its lease, by the local
    /// clock, is within `servingWindow` of its last successful renewal. A client always answers false.
    public var isServing: Bool { state.withLock { s in servingNow(s) } }

    private func servingNow(_ s: State) -> Bool {
        guard options.role == .node, s.phase == .active || s.phase == .shuttingDown else { return false }
        guard let until = s.servingUntil else { return false }
        return clock.now < until
    }

    // MARK: Life cycle

    /// Starts serving (a node), joins the membership table (Joining, then Active, with a lease), attaches this node as
    /// the actor system's forwarder and starts the membership agent. A client only reads the table.
    public func start() async throws {
        try state.withLock { s throws(ClusterError) in
            guard s.phase == .created else {
                throw .nodeNotRunning(node: "\(s.id)", state: "already \(s.phase.rawValue)")
            }
            s.phase = .joining
        }
        if options.role == .node {
            let port = try await transport.serve(self, at: id)
            state.withLock { s in
                s.id.port = options.advertisedPort ?? port
                if let advertised = options.advertisedHost { s.id.host = advertised }
            }
            let joined = clock.now
            try await changeOwnRow { _ in
                MembershipEntry(
                    node: self.id, status: .joining, iAmAlive: Date(), startTime: Date(), capacity: self.capacity(),
                    labels: self.options.labels)
            }
            // The insert gave the row a lease from the table's clock after `joined`.
            state.withLock { $0.servingUntil = joined.advanced(by: options.servingWindow) }
            do {
                try await awaitAdmission()
            } catch {
                state.withLock { $0.phase = .stopped }
                await transport.shutdown()
                throw error
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
    /// death, then stops. Throws `ClusterError.nodeNotRunning` when the node lost its membership (its lease ended or
    /// its row is Dead).
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
            state.withLock { $0.agent }?.cancel()
            // Not awaited: calls still running here may wait on a database that does not answer (a partition), and
            // a dead node must not hang its caller on them; the transport closes in the background.
            let transport = self.transport
            Task { await transport.shutdown() }
            throw ClusterError.nodeNotRunning(node: "\(id)", state: "its membership ended: lease lost or row Dead")
        }
        await stop()
    }

    /// Graceful stop. The node takes no new calls (they get `notHere` and follow the directory), its row goes
    /// ShuttingDown (no new registrations), the calls it is running finish (at most `drainTimeout`), every activation
    /// is deactivated (its snapshot saved) and, once saved, unregistered; the row goes Dead (`leftGracefully`) and the
    /// transport closes. The lease is renewed throughout. An activation whose save keeps failing stays registered and
    /// the row is written Dead without `leftGracefully`, as after a crash: the actor reactivates elsewhere from its
    /// last snapshot and journal. A node already Dead only closes.
    public func stop() async {
        let (starting, deadAgent) = state.withLock { s -> (Bool, Task<Void, Never>?) in
            if s.phase == .dead {
                // Its membership ended: nothing to save or leave; close what is still open.
                defer { s.agent = nil }
                return (false, s.agent)
            }
            guard s.phase == .active || s.phase == .joining else { return (false, nil) }
            s.phase = .shuttingDown
            return (true, nil)
        }
        if let deadAgent {
            deadAgent.cancel()
            await deadAgent.value
            await transport.shutdown()
        }
        guard starting else { return }
        var clean = true
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
            await drain()
            var failures = await system.shutdown()
            for attempt in 1..<3 where !failures.isEmpty {
                logger.warning(
                    "deactivations failed at shutdown; retrying",
                    metadata: ["attempt": "\(attempt)", "actors": "\(failures.keys.map(\.description).sorted())"])
                try? await Task.sleep(for: options.roundInterval)
                var still: [GPUActorID: any Error] = [:]
                for (id, _) in failures {
                    do { try await system.deactivate(id) } catch { still[id] = error }
                }
                failures = still
            }
            for (id, error) in failures {
                clean = false
                logger.error(
                    "deactivation failed at shutdown; the activation stays registered and reactivates elsewhere from its last snapshot and journal",
                    metadata: ["actor": "\(id)", "error": "\(error)"])
            }
            let me = id
            for (actor, activation) in hosted where failures[actor] == nil {
                do {
                    _ = try await database("unregister \(actor)") {
                        try await self.directory.unregister(ActorAddress(id: actor, node: me, activation: activation))
                    }
                } catch {
                    clean = false
                    logger.error(
                        "could not unregister an activation", metadata: ["actor": "\(actor)", "error": "\(error)"])
                }
            }
            let graceful = clean
            do {
                try await changeOwnRow { e in
                    e.map {
                        var e = $0; e.status = .dead; e.leftGracefully = graceful; return e
                    }
                }
            } catch {
                logger.error("could not mark this node Dead; its lease will end", metadata: ["error": "\(error)"])
            }
        }
        let agent = state.withLock { s -> Task<Void, Never>? in
            if s.phase == .shuttingDown { s.phase = .stopped }
            s.hosted = [:]
            return s.agent
        }
        agent?.cancel()
        await agent?.value
        wakeDeathWaiters()
        await transport.shutdown()
        logger.info("cluster \(options.role.rawValue) stopped", metadata: ["node": "\(id)"])
    }

    /// Stops the node abruptly, as a crash would (for tests and demonstrations): no drain, no saves, no leave. It
    /// stops serving and renewing at once and closes its transport, so the others find it Dead once its lease ends and
    /// its actors reactivate elsewhere from their snapshots and journals.
    public func halt() async {
        let agent = state.withLock { s -> Task<Void, Never>? in
            s.phase = .stopped
            s.servingUntil = nil
            return s.agent
        }
        agent?.cancel()
        await agent?.value
        wakeDeathWaiters()
        await transport.shutdown()
        logger.warning("cluster node halted", metadata: ["node": "\(id)"])
    }

    /// Waits until an active member reached this node over the cluster transport and turned its row Active (members
    /// do so in their rounds), renewing the lease meanwhile. With no active member the node admits itself (it is the
    /// first). A node no member can reach (another CA's certificate, a wrong address, a partition) is not admitted
    /// within two leases: it writes its row Dead and `start` throws.
    private func awaitAdmission() async throws {
        let deadline = clock.now.advanced(by: options.leaseDuration * 2)
        while true {
            let snapshot = try await database("read membership") { try await self.membership.readAll() }
            guard let own = snapshot.entry(of: id) else {
                throw ClusterError.nodeNotRunning(node: "\(id)", state: "its membership row disappeared while joining")
            }
            switch own.entry.status {
            case .active: return
            case .dead, .shuttingDown:
                throw ClusterError.nodeNotRunning(
                    node: "\(id)", state: "its row turned \(own.entry.status) while joining")
            case .joining: break
            }
            if !snapshot.active.contains(where: { $0.node != id }) {
                var promoted = own.entry
                promoted.status = .active
                let entry = promoted
                let admitted = try await database("admit this node") {
                    try await self.membership.update(entry, etag: own.etag, expectedVersion: snapshot.version)
                }
                if admitted { return }
                continue
            }
            guard clock.now < deadline else {
                try? await changeOwnRow { e in
                    e.map {
                        var e = $0; e.status = .dead; return e
                    }
                }
                throw ClusterError.nodeNotRunning(
                    node: "\(id)",
                    state: "not admitted: no active member reached it over the cluster transport within "
                        + "\(options.leaseDuration * 2) (check its certificate and its advertised address)")
            }
            try await Task.sleep(for: options.roundInterval)
            await renewLease()
            if phase == .dead {
                throw ClusterError.nodeNotRunning(node: "\(id)", state: "its lease ended while joining")
            }
        }
    }

    /// Admits the joining nodes this node can reach: pings each live Joining row's node over the transport and, when
    /// the answer carries the same identity, turns the row Active (a compare-and-swap; another member may win it).
    private func admitJoiningNodes(_ snapshot: MembershipSnapshot) async {
        let me = id
        let joining = snapshot.entries.filter {
            $0.entry.status == .joining && $0.entry.isLive(at: snapshot.now) && $0.entry.node != me
        }
        guard !joining.isEmpty else { return }
        let timeout = options.effectiveDatabaseTimeout
        await withTaskGroup(of: Void.self) { group in
            for row in joining {
                group.addTask {
                    guard
                        let answered = try? await self.transport.ping(row.entry.node, from: "\(me)", timeout: timeout),
                        answered == row.entry.node
                    else { return }
                    var promoted = row.entry
                    promoted.status = .active
                    let entry = promoted
                    let admitted =
                        (try? await self.database("admit \(row.entry.node)") {
                            try await self.membership.update(entry, etag: row.etag, expectedVersion: snapshot.version)
                        }) ?? false
                    if admitted { self.logger.info("admitted a node", metadata: ["node": "\(row.entry.node)"]) }
                }
            }
        }
    }

    /// Waits until no served call is running, or `drainTimeout` passes.
    private func drain() async {
        let race = DeadlineRace<Bool>()
        let done: Bool? = try? await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<Bool, any Error>) in
            race.start(
                continuation,
                work: Task {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let idle = state.withLock { s -> Bool in
                            if s.callsInFlight == 0 { return true }
                            s.drainWaiters.append(c)
                            return false
                        }
                        if idle { c.resume() }
                    }
                    race.finish(.success(true))
                },
                timer: Task {
                    do { try await Task.sleep(for: options.drainTimeout) } catch { return }
                    race.finish(.success(false))
                })
        }
        if done != true {
            logger.warning(
                "calls still running after the drain timeout; deactivating anyway",
                metadata: ["calls": "\(state.withLock { $0.callsInFlight })"])
            let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                defer { s.drainWaiters = [] }
                return s.drainWaiters
            }
            for waiter in waiters { waiter.resume() }
        }
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

    /// Writes this node's row with a compare-and-swap on the table version, re-reading and retrying on conflicts. A
    /// Dead row is never changed (the table refuses it): the loop then ends without writing.
    private func changeOwnRow(_ change: @escaping @Sendable (MembershipEntry?) -> MembershipEntry?) async throws {
        for _ in 0..<50 {
            let snapshot = try await database("read membership") { try await self.membership.readAll() }
            let current = snapshot.entry(of: id)
            if current?.entry.status == .dead { return }
            guard let next = change(current?.entry) else { return }
            let ok: Bool
            if let current {
                ok = try await database("update this node's row") {
                    try await self.membership.update(next, etag: current.etag, expectedVersion: snapshot.version)
                }
            } else {
                ok = try await database("insert this node's row") {
                    try await self.membership.insert(
                        next, lease: self.options.leaseDuration, expectedVersion: snapshot.version)
                }
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

    /// Runs a membership or directory call with `databaseTimeout`: past it the call is abandoned (cancelled) and
    /// `ClusterError.databaseTimeout` thrown, so an unreachable database never stalls a round or a call for long.
    func database<T: Sendable>(_ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let timeout = options.effectiveDatabaseTimeout
        return try await Self.race(
            timeout, onTimeout: { ClusterError.databaseTimeout(call: what, timeout: "\(timeout)") }, body)
    }

    // MARK: Membership agent

    private func agentLoop() async {
        while !Task.isCancelled {
            let phase = self.phase
            guard phase == .active || phase == .shuttingDown else { return }
            do { try await Task.sleep(for: options.roundInterval) } catch { return }
            do { try await tick() } catch {
                logger.warning("membership round failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// One membership round: renew this node's lease, expire the leases that ended, read the table.
    func tick() async throws {
        if options.role == .node {
            await renewLease()
            guard phase != .dead else { return }
            let round = state.withLock { s -> Int in
                s.rounds += 1
                return s.rounds
            }
            do {
                let expired = try await database("expire leases") { try await self.membership.expireLeases() }
                for node in expired {
                    expiredCounter.increment()
                    logger.warning("a node's lease ended; it is Dead", metadata: ["node": "\(node)"])
                }
                if round % 10 == 0 {
                    let retention = options.deadRowRetention
                    let removed = try await database("remove old Dead rows") {
                        try await self.membership.removeDead(olderThan: retention)
                    }
                    if !removed.isEmpty {
                        logger.info("removed old Dead rows", metadata: ["nodes": "\(removed.map(\.description))"])
                    }
                }
            } catch {
                logger.warning("could not expire leases", metadata: ["error": "\(error)"])
            }
        }
        let snapshot = try await refreshView()
        if options.role == .node, phase == .active { await admitJoiningNodes(snapshot) }
        let (activations, inFlight) = state.withLock { ($0.hosted.count, $0.callsInFlight) }
        activationsGauge.record(activations)
        inFlightGauge.record(inFlight)
        activeNodesGauge.record(snapshot.active.count)
    }

    /// Renews this node's lease. A renewal extends the time it may serve; a refusal (row Dead, lease ended) kills it; a
    /// failure (database unreachable, timeout) leaves it serving until `servingUntil`, then fenced.
    private func renewLease() async {
        let started = clock.now
        do {
            let capacity = self.capacity()
            let me = id
            let result = try await database("renew the lease") {
                try await self.membership.renewLease(me, lease: self.options.leaseDuration, capacity: capacity)
            }
            switch result {
            case .renewed:
                let resumed = state.withLock { s -> Bool in
                    let until = started.advanced(by: options.servingWindow)
                    if s.servingUntil.map({ until > $0 }) ?? true { s.servingUntil = until }
                    defer { s.fenced = false }
                    return s.fenced
                }
                if resumed { logger.notice("lease renewed; serving again", metadata: ["node": "\(id)"]) }
            case let .lost(reason):
                die(reason)
            }
        } catch {
            renewalFailures.increment()
            let (newlyFenced, until) = state.withLock { s -> (Bool, ContinuousClock.Instant?) in
                guard let until = s.servingUntil, clock.now >= until, !s.fenced else { return (false, s.servingUntil) }
                s.fenced = true
                return (true, until)
            }
            if newlyFenced {
                logger.error(
                    "stopped serving: the lease could not be renewed within the serving window",
                    metadata: ["node": "\(id)", "error": "\(error)"])
            } else {
                logger.warning(
                    "could not renew the lease",
                    metadata: [
                        "error": "\(error)",
                        "serving for": "\(until.map { max(.zero, $0 - clock.now) } ?? .zero)",
                    ])
            }
        }
    }

    /// This node's membership ended: it stops serving for good.
    private func die(_ reason: String) {
        let first = state.withLock { s -> Bool in
            guard s.phase != .dead, s.phase != .stopped else { return false }
            // A graceful stop in progress finishes (its writes are fenced by the storage); anything else dies now.
            guard s.phase != .shuttingDown else { return false }
            s.phase = .dead
            s.servingUntil = nil
            return true
        }
        guard first else { return }
        logger.critical("this node's membership ended; stopping", metadata: ["node": "\(id)", "reason": "\(reason)"])
        wakeDeathWaiters()
    }

    /// Reads the table; forgets connections and directory entries of nodes that died.
    @discardableResult
    func refreshView() async throws -> MembershipSnapshot {
        let snapshot = try await database("read membership") { try await self.membership.readAll() }
        let (newlyDead, satisfied) = state.withLock {
            s -> ([NodeID], [(CheckedContinuation<MembershipSnapshot?, Never>, MembershipSnapshot)]) in
            if snapshot.version >= s.view.version { s.view = snapshot }
            var satisfied: [(CheckedContinuation<MembershipSnapshot?, Never>, MembershipSnapshot)] = []
            for (key, waiter) in s.viewWaiters where waiter.condition(s.view) {
                s.viewWaiters[key] = nil
                satisfied.append((waiter.continuation, s.view))
            }
            let dead = snapshot.entries.map(\.entry).filter {
                !$0.isLive(at: snapshot.now) && !s.cleaned.contains($0.node)
            }.map(\.node)
            for node in dead {
                s.cleaned.insert(node)
                s.locations.forget(node: node)
            }
            // Rows removed from the table need no more cleaning.
            let present = Set(snapshot.entries.map(\.entry.node))
            s.cleaned = s.cleaned.filter { present.contains($0) }
            return (dead, satisfied)
        }
        for (continuation, view) in satisfied { continuation.resume(returning: view) }
        for node in newlyDead where node != id {
            transport.forget(node)
            if options.role == .node {
                let removed =
                    (try? await database("unregister a dead node's activations") {
                        try await self.directory.unregisterAll(on: node)
                    }) ?? 0
                if removed > 0 {
                    logger.info(
                        "removed a dead node's activations from the directory",
                        metadata: ["node": "\(node)", "activations": "\(removed)"])
                }
            }
        }
        return snapshot
    }

    /// A fresh read of the table shared by every caller that asks while it runs: many calls that hit an unreachable
    /// node at once cost one read, not one each.
    private func sharedRefresh() async throws -> MembershipSnapshot {
        let task = state.withLock { s -> Task<MembershipSnapshot, any Error> in
            if let running = s.refreshing { return running }
            let task = Task { [self] in
                defer { state.withLock { $0.refreshing = nil } }
                return try await refreshView()
            }
            s.refreshing = task
            return task
        }
        return try await task.value
    }

    /// Waits until this node's membership view satisfies `condition` (checked now and after each membership round,
    /// every `roundInterval`), without polling. Returns that view, or nil when `timeout` passes first or the task is
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

    /// Whether `node` is dead in the current view: its row is Dead or its lease ended by the table's clock at the
    /// read. A node the view does not list is not known dead (it may have joined since).
    private func isDead(_ node: NodeID) -> Bool {
        state.withLock { s in
            guard let row = s.view.entry(of: node)?.entry else { return s.cleaned.contains(node) }
            return !row.isLive(at: s.view.now)
        }
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
        var notHereWait = Duration.milliseconds(20)  // doubles after each notHere, up to one round
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
                // A node that left gracefully (row Dead, `leftGracefully`) stopped serving only after its calls drained
                // and its activations were saved and unregistered: the call never ran there, so it goes to the new one.
                if let row = (try? await sharedRefresh())?.entry(of: address.node)?.entry, row.status == .dead,
                    row.leftGracefully, clock.now < deadline
                {
                    continue
                }
                guard clock.now < retryUntil, clock.now < deadline else { throw error }
                logger.debug(
                    "node unreachable; retrying after a membership round",
                    metadata: ["actor": "\(id)", "node": "\(address.node)"])
                try await Task.sleep(for: min(options.roundInterval, max(.zero, deadline - clock.now)))
                _ = try? await sharedRefresh()
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
                // each time (20 ms doubling up to one round), and never past the deadline.
                let left = max(.zero, deadline - clock.now)
                let registered = try await Self.within(left, actor: id, node: "(looking it up in the directory)") {
                    try await self.directory.lookup(id)
                }
                // A placement request (activation 0) refused while the directory names no live activation: the
                // chosen node could not place it yet (its view may lag the caller's); wait as well.
                let placementRefused = address.activation == 0 && (registered.map { isDead($0.node) } ?? true)
                if registered == address || placementRefused {
                    if isDead(address.node) {
                        // Nodes remove a dead node's entries (a client only waits for them to).
                        if options.role == .node { try await directory.unregister(address) }
                    } else {
                        try await Task.sleep(for: min(notHereWait, max(.zero, deadline - clock.now)))
                        notHereWait = min(notHereWait * 2, options.roundInterval)
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
        try await race(
            timeout, onTimeout: { ClusterError.deadlineExceeded(actor: "\(actor)", node: node, timeout: "\(timeout)") },
            body)
    }

    /// Runs `body`, or throws `onTimeout()` when `timeout` passes first (see `within`).
    static func race<T: Sendable>(
        _ timeout: Duration, onTimeout: @escaping @Sendable () -> any Error,
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
                        race.finish(.failure(onTimeout()))
                    })
                if Task.isCancelled { race.finish(.failure(CancellationError())) }
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }

    private func forgetLocation(of id: GPUActorID) { state.withLock { $0.locations[id] = nil } }

    /// Where `id`'s activation is: the cached location, the directory's live entry, or a new registration on the node
    /// placement chooses.
    public func locate(_ id: GPUActorID) async throws -> ActorAddress { try await locate(id, attempt: 0) }

    private func locate(_ id: GPUActorID, attempt: Int) async throws -> ActorAddress {
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
        let found = try await directory.lookup(id)
        if let found, !isDead(found.node) {
            state.withLock { $0.locations[id] = found }
            return found
        }
        let candidates = state.withLock { s in s.view.active.filter { !s.cleaned.contains($0.node) } }
        guard let chosen = CapacityPlacement(footprint: options.activationFootprint).choose(for: id, among: candidates)
        else {
            throw ClusterError.noActiveNodes(actor: "\(id)", reason: "the membership table lists no active node")
        }
        // A client writes nothing to the database: the chosen node registers the actor on itself when the call
        // arrives (activation 0 asks it to), and removes a dead node's entry first. So clients need only read access.
        if options.role == .client { return ActorAddress(id: id, node: chosen, activation: 0) }
        if let found { try await directory.unregister(found) }
        let registered: ActorAddress
        do {
            registered = try await directory.register(id, on: chosen)
        } catch let error as ClusterError {
            // The chosen node's lease ended since this view was read: read the table again and choose anew.
            guard case .noActiveNodes = error, attempt < 3 else { throw error }
            _ = try await sharedRefresh()
            return try await locate(id, attempt: attempt + 1)
        }
        if isDead(registered.node) {
            try await directory.unregister(registered)
            return try await locate(id, attempt: attempt + 1)
        }
        state.withLock { $0.locations[id] = registered }
        return registered
    }

    // MARK: Serving (NodeCallHandler)

    /// Registers `id` on this node for a client's placement request (activation 0): replaces an entry on a node this
    /// view knows dead; returns the registered activation, this node's or another's.
    private func placeHere(_ id: GPUActorID) async throws -> ActorAddress? {
        if let found = try await directory.lookup(id) {
            guard isDead(found.node) else { return found }
            try await directory.unregister(found)
        }
        return try await directory.register(id, on: self.id)
    }

    public func handle(_ request: ClusterRequest) async -> ClusterReply {
        var address = request.address
        let me = id
        guard address.node == me else { return .notHere(reason: "this is node \(me), the call is for \(address.node)") }
        guard phase == .active else { return .notHere(reason: "node \(me) is \(phase.rawValue)") }
        guard isServing else {
            return .notHere(reason: "node \(me) could not renew its membership lease in time and serves nothing now")
        }
        let hosted = state.withLock { $0.hosted[address.id] }
        if hosted != address.activation {
            if let hosted, address.activation == 0 {
                // A client's placement request for an actor this node already holds: serve it there.
                address.activation = hosted
            } else if let hosted {
                return .notHere(
                    reason: "node \(me) holds activation #\(hosted) of \(address.id), not #\(address.activation)")
            }
        }
        if state.withLock({ $0.hosted[address.id] }) != address.activation {
            let registered: ActorAddress?
            let wanted = address
            do {
                registered = try await database("look up \(address.id)") {
                    wanted.activation == 0
                        ? try await self.placeHere(wanted.id) : try await self.directory.lookup(wanted.id)
                }
            } catch {
                return .reply(.error(RemoteErrorEnvelope(error)))
            }
            if address.activation == 0, let registered, registered.node == me { address = registered }
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
        // Admission: active and within the lease, counted in flight under the same lock, so a graceful stop that
        // begins after this point waits for the call (drain) and one that began before refuses it.
        let admitted = state.withLock { s -> Bool in
            guard s.phase == .active, servingNow(s) else { return false }
            s.callsInFlight += 1
            return true
        }
        guard admitted else { return .notHere(reason: "node \(me) is \(phase.rawValue) or not serving") }
        defer {
            let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                s.callsInFlight -= 1
                guard s.callsInFlight == 0 else { return [] }
                defer { s.drainWaiters = [] }
                return s.drainWaiters
            }
            for waiter in waiters { waiter.resume() }
        }
        servedCounter.increment()
        let reply = await ActivationFence.$current.withValue((address.id, address.activation)) {
            await system.execute(request.call, on: address.id)
        }
        // A call that outlived this node's lease may overlap the actor's next activation: it must not be acknowledged.
        guard isServing else {
            return .reply(.error(RemoteErrorEnvelope(ClusterError.leaseExpired(node: "\(me)", actor: "\(address.id)"))))
        }
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
                do {
                    let failed = address
                    _ = try await database("unregister \(failed)") { try await self.directory.unregister(failed) }
                } catch {
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
