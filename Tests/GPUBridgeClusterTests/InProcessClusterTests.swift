import Distributed
import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import GPUBridgeTestSupport
import Synchronization
import Testing

/// A test actor whose failures and delays are the point: a non-Codable error and a call that outlives its deadline.
distributed actor TroubleActor: VirtualActor {
    typealias ActorSystem = EmbeddedActorSystem
    let lifecycle = ActivationLifecycle()

    init(actorSystem: EmbeddedActorSystem) { self.actorSystem = actorSystem }
    /// Keys starting with "unplaceable" never activate.
    func activate() async throws -> DeviceID? {
        guard !id.key.hasPrefix("unplaceable") else {
            throw GPUBridgeError.backendUnavailable(backend: "test", reason: "\(id) refuses to activate")
        }
        return nil
    }
    func deactivate() async throws {}

    struct Opaque: Error, CustomStringConvertible {
        var description: String { "an opaque failure 42" }
    }

    distributed func failOpaque() async throws -> Int { try await withActivation { throw Opaque() } }
    /// Waits `milliseconds` of real time (a deadline test needs a call that takes longer than its deadline).
    distributed func wait(milliseconds: Int) async throws -> Int {
        try await withActivation {
            try await Task.sleep(for: .milliseconds(milliseconds))
            return milliseconds
        }
    }
}

/// Several nodes in one process: in-memory membership, directory and storage, the in-process transport.
struct InProcessCluster {
    let network = InProcessNodeTransport.Network()
    let membership: InMemoryMembershipTable
    let directory: InMemoryActorDirectory
    let storage = InMemoryActorStorage()
    var nodes: [ClusterNode] = []
    /// Each node's link to the membership table (parallel to `nodes`), which a test may cut.
    var links: [CuttableMembershipTable] = []
    /// The actor system options of the nodes started from now on.
    var actorOptions = ActorSystemOptions()

    /// The membership table's clock: it moves only when a test moves it (`advanceTable`), so no lease ends by accident.
    let clock: ManualClock

    init() {
        let clock = ManualClock()
        self.clock = clock
        membership = InMemoryMembershipTable(clock: { clock.now })
        directory = InMemoryActorDirectory(membership: membership)
    }

    /// Moves the table's clock on by at least `total`, a fifth of a lease at a time, waiting after each step until
    /// every node in `renewing` renewed its lease at the new time: only the nodes left out can let their lease end.
    func advanceTable(by total: Duration, renewing: [ClusterNode]) async -> Bool {
        let step = Self.options(port: 0).leaseDuration / 5
        var moved = Duration.zero
        while moved < total {
            clock.advance(step)
            moved += step
            let now = clock.now
            for node in renewing {
                let renewed = await eventually(timeout: .seconds(120)) {
                    (try? await membership.readAll().entry(of: node.id)?.entry.iAmAlive).map { $0 >= now } ?? false
                }
                guard renewed else { return false }
            }
        }
        return true
    }

    /// Lets `victim`'s lease end (the others keep theirs) and waits until a survivor wrote its row Dead.
    func expire(_ victim: ClusterNode) async -> Bool {
        let lease = Self.options(port: 0).leaseDuration
        guard await advanceTable(by: lease + lease / 5, renewing: nodes.filter { $0 !== victim && $0.phase == .active })
        else { return false }
        return await eventually(timeout: .seconds(60)) {
            (try? await membership.readAll().entry(of: victim.id)?.entry.status) == .dead
        }
    }

    static let dim = 16

    static func options(port: Int) -> ClusterOptions {
        var options = ClusterOptions()
        options.port = port
        options.roundInterval = .milliseconds(50)
        // The table's clock is the test's (`ManualClock`); the lease also sets how long a node serves without a
        // renewal by its own clock: 4.5 s here.
        options.leaseDuration = .seconds(5)
        options.databaseTimeout = .seconds(1)
        options.callTimeout = .seconds(20)
        return options
    }

    static func register(_ system: EmbeddedActorSystem) throws {
        try system.register(VectorIndexActor.self, as: "vector-index") {
            VectorIndexActor(actorSystem: $0, dim: dim, initialCapacity: 64)
        }
        try system.register(EchoActor.self, as: "echo") { EchoActor(actorSystem: $0) }
        try system.register(TroubleActor.self, as: "trouble") { TroubleActor(actorSystem: $0) }
    }

    func makeSystem() throws -> EmbeddedActorSystem {
        try Self.cpuSystem(storage: storage, options: actorOptions, register: Self.register)
    }

    /// An actor system on one CPU device with `register`'s actor types (each test node, client and reference has one).
    static func cpuSystem(
        storage: any ActorStorage, options: ActorSystemOptions = ActorSystemOptions(),
        register: (EmbeddedActorSystem) throws -> Void
    ) throws -> EmbeddedActorSystem {
        var bridgeOptions = BridgeOptions()
        bridgeOptions.cacheDirectory = nil
        bridgeOptions.backendOrder = [.cpu]
        let system = try EmbeddedActorSystem(
            bridge: try Bridge(options: bridgeOptions, backends: [CPUBackend()]), storage: storage, options: options)
        try register(system)
        return system
    }

    mutating func start(count: Int, configure: (inout ClusterOptions) -> Void = { _ in }) async throws {
        for i in 0..<count {
            var options = Self.options(port: 7000 + nodes.count + i)
            configure(&options)
            let link = CuttableMembershipTable(membership)
            let node = try ClusterNode(
                system: try makeSystem(), membership: link, directory: directory,
                transport: InProcessNodeTransport(network: network), options: options)
            try await node.start()
            nodes.append(node)
            links.append(link)
        }
        // Every node sees every other as active before the test calls (views refresh every round).
        let all = Set(nodes.map(\.id))
        for node in nodes {
            _ = await eventually { Set(node.view.active.map(\.node)).isSuperset(of: all) }
        }
    }

    func stopAll() async { for node in nodes { await node.stop() } }
}

@Suite("Cluster in one process: placement, one activation per key, failure detection, errors")
struct InProcessClusterTests {
    @Test("indexes spread over three nodes answer exactly as in a single process")
    func spreadAndEqual() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 3)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let single = InProcessCluster()
        let reference = try single.makeSystem()

        var random = SplitMix64(seed: 5)
        let dim = InProcessCluster.dim
        for t in 0..<30 {
            let rows = random.floats(40 * dim, -1, 1)
            let ids = Array(t * 100..<t * 100 + 40)
            let queries = random.floats(3 * dim, -1, 1)
            let remote = try cluster.nodes[t % 3].system.actor(VectorIndexActor.self, key: "tenant-\(t)")
            let local = try reference.actor(VectorIndexActor.self, key: "tenant-\(t)")
            #expect(try await remote.upsert(ids: ids, vectors: rows) == 40)
            _ = try await local.upsert(ids: ids, vectors: rows)
            let got = try await remote.query(queries, k: 5)
            #expect(got == (try await local.query(queries, k: 5)))
        }
        let placed = Dictionary(grouping: try await cluster.directory.all(), by: \.node)
        #expect(placed.count == 3, "30 indexes over 3 nodes: \(placed.mapValues(\.count))")
        // Every activation runs on the node the directory names, and only there.
        for node in cluster.nodes {
            #expect(Set(node.hosted.keys) == Set((placed[node.id] ?? []).map(\.id)))
        }
        _ = single
    }

    @Test("concurrent first calls from three nodes to one key create exactly one activation")
    func oneActivation() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 3)
        defer { Task { [cluster] in await cluster.stopAll() } }
        for round in 0..<5 {
            let key = "hot-\(round)"
            let counts = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<60 {
                    let system = cluster.nodes[i % 3].system
                    group.addTask { try await system.actor(EchoActor.self, key: key).echo([UInt8(i)]).count }
                }
                return try await group.reduce(0, +)
            }
            #expect(counts == 60)
            let id = GPUActorID(type: "echo", key: key)
            let instances = cluster.nodes.map { $0.system.instanceCount(of: id) }
            #expect(instances.reduce(0, +) == 1, "instances per node: \(instances)")
            let hosting = cluster.nodes.filter { $0.hosted[id] != nil }
            #expect(hosting.count == 1)
            #expect(try await hosting.first?.system.actor(EchoActor.self, key: key).callCount() == 60)
        }
    }

    @Test("a node that loses the database stops serving, its lease ends, its actors reactivate with every write")
    func failover() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 3)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let dim = InProcessCluster.dim
        var random = SplitMix64(seed: 9)
        let client = cluster.nodes[0].system
        // An index on a node other than the first (the caller), checkpointed.
        var key = ""
        for k in 0..<64 where key.isEmpty {
            let address = try await cluster.nodes[0].locate(GPUActorID(type: "vector-index", key: "k\(k)"))
            if address.node != cluster.nodes[0].id { key = "k\(k)" }
        }
        let id = GPUActorID(type: "vector-index", key: key)
        let index = try client.actor(VectorIndexActor.self, key: key)
        let rows = random.floats(30 * dim, -1, 1)
        _ = try await index.upsert(ids: Array(0..<30), vectors: rows)
        try await index.checkpoint()
        let queries = random.floats(2 * dim, -1, 1)
        // A row after the checkpoint is not in the snapshot but in the journal: it survives the node.
        _ = try await index.upsert(ids: [500], vectors: random.floats(dim, -1, 1))
        let before = try await index.query(queries, k: 4)

        let victimIndex = try #require(cluster.nodes.firstIndex { $0.hosted[id] != nil })
        let victim = cluster.nodes[victimIndex]
        // The victim loses the network and the database (a crash, as the others see it).
        cluster.network.setReachable(host: victim.id.host, port: victim.id.port, false)
        cluster.links[victimIndex].isCut = true
        // Calls in flight or made before the death is declared fail with a clear error, not silently.
        do {
            _ = try await index.vectorCount()
            Issue.record("a call to an unreachable node succeeded")
        } catch let error as ClusterError {
            guard case .nodeUnreachable = error else { Issue.record("unexpected \(error)"); return }
        }
        // The victim stops serving on its own before the table may end its lease (it can see only its own clock).
        #expect(await eventually(timeout: .seconds(60)) { !victim.isServing })
        let stillLive = try #require(try await cluster.membership.readAll().entry(of: victim.id)?.entry)
        #expect(stillLive.status == .active, "the victim fenced itself before its lease ended")
        // A survivor's round writes the row Dead once the lease ended by the table's clock.
        #expect(await cluster.expire(victim))
        // The next call reactivates the index on a survivor with every acknowledged row (snapshot + journal).
        #expect(await eventually(timeout: .seconds(20)) { (try? await index.vectorCount()) == 31 })
        #expect(try await index.query(queries, k: 4) == before)
        let now = try #require(try await cluster.directory.lookup(id))
        #expect(now.node != victim.id)
        // When its link comes back the victim learns it is Dead and stops for good; its row stays Dead.
        cluster.links[victimIndex].isCut = false
        cluster.network.setReachable(host: victim.id.host, port: victim.id.port, true)
        #expect(await eventually(timeout: .seconds(20)) { victim.phase == .dead })
        await victim.stop()
        #expect(try await cluster.membership.readAll().entry(of: victim.id)?.entry.status == .dead)
        #expect(try await index.vectorCount() == 31)
    }

    @Test("a node cut off from its peers but not from the database is declared dead by no one and kills no one")
    func partitionFromPeersOnly() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 3)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let isolated = cluster.nodes[0]
        cluster.network.setReachable(host: isolated.id.host, port: isolated.id.port, false)
        for other in cluster.nodes.dropFirst() { cluster.network.setReachable(from: isolated.id, to: other.id, false) }
        // Two leases of the table's time pass with everybody renewing: under peer votes the cut-off node killed the
        // others and they it; under leases nothing happens.
        #expect(await cluster.advanceTable(by: .seconds(10), renewing: cluster.nodes))
        let view = try await cluster.membership.readAll()
        #expect(view.entries.allSatisfy { $0.entry.status == .active }, "\(view.entries.map(\.entry.status))")
        #expect(cluster.nodes.allSatisfy { $0.phase == .active })
        cluster.network.setReachable(host: isolated.id.host, port: isolated.id.port, true)
        for other in cluster.nodes.dropFirst() { cluster.network.setReachable(from: isolated.id, to: other.id, true) }
        // Healed: every node reaches every actor again.
        for (n, node) in cluster.nodes.enumerated() {
            for k in 0..<6 {
                #expect(try await node.system.actor(EchoActor.self, key: "p\(k)").echo([UInt8(n)]) == [UInt8(n)])
            }
        }
    }

    @Test("remote errors come back typed when Codable, as RemoteActorError otherwise; deadlines hold")
    func errorsAndDeadlines() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 2)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let system = cluster.nodes[0].system
        for key in ["a", "b", "c", "d"] {
            let index = try system.actor(VectorIndexActor.self, key: key)
            await #expect(throws: GPUBridgeError.self) {
                try await index.query([Float](repeating: 0, count: InProcessCluster.dim), k: 0)
            }
            do {
                _ = try await index.query([Float](repeating: 0, count: InProcessCluster.dim), k: 0)
            } catch let error as GPUBridgeError {
                guard case let .invalidArgument(name, value, _) = error else { Issue.record("\(error)"); continue }
                #expect(name == "k" && value == "0")
            }
            let trouble = try system.actor(TroubleActor.self, key: key)
            do {
                _ = try await trouble.failOpaque()
                Issue.record("failOpaque returned")
            } catch let error as RemoteActorError {
                #expect(error.description == "an opaque failure 42")
                #expect(error.type.hasSuffix("Opaque"))
            }
            let started = ContinuousClock.now
            await #expect(throws: ClusterError.self) {
                try await ClusterCall.$timeout.withValue(.milliseconds(100)) {
                    try await trouble.wait(milliseconds: 5000)
                }
            }
            #expect(ContinuousClock.now - started < .seconds(4))
            // A deadline no clock can add (it used to overflow and trap) is refused, naming the setting.
            for bad in [Duration.seconds(Int64.max), .zero, .seconds(-1)] {
                let error = await bridgeError {
                    try await ClusterCall.$timeout.withValue(bad) { _ = try await trouble.wait(milliseconds: 1) }
                }
                guard case let .invalidArgument(name, _, limit)? = error else {
                    Issue.record("\(bad): \(String(describing: error))"); continue
                }
                #expect(name == "ClusterCall.timeout" && limit == "more than zero, at most a day")
            }
        }
    }

    @Test("a graceful stop snapshots the node's actors, leaves the directory and marks the row Dead")
    func gracefulStop() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 2)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let dim = InProcessCluster.dim
        var random = SplitMix64(seed: 3)
        let system = cluster.nodes[0].system
        var keys: [String] = []
        for k in 0..<8 {
            let index = try system.actor(VectorIndexActor.self, key: "g\(k)")
            _ = try await index.upsert(ids: [k, k + 100], vectors: random.floats(2 * dim, -1, 1))
            keys.append("g\(k)")
        }
        let leaving = cluster.nodes[1]
        let hadActors = leaving.hosted.count
        #expect(hadActors > 0)
        await leaving.stop()
        #expect(leaving.phase == .stopped)
        #expect(try await cluster.membership.readAll().entry(of: leaving.id)?.entry.status == .dead)
        #expect(try await cluster.directory.all().allSatisfy { $0.node != leaving.id })
        // Every index answers from the remaining node with its rows (the snapshot taken at shutdown).
        for (k, key) in keys.enumerated() {
            #expect(try await system.actor(VectorIndexActor.self, key: key).idsInRowOrder() == [k, k + 100])
        }
    }

    @Test("a graceful stop under load: calls in flight finish first, later ones move; no acknowledged write is lost")
    func gracefulStopUnderLoad() async throws {
        var cluster = InProcessCluster()
        // Snapshots only: a write applied after the leaving node's final save would be lost, so the stop must drain.
        cluster.actorOptions.durability.journal = false
        try await cluster.start(count: 2)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let dim = InProcessCluster.dim
        let leaving = cluster.nodes[1]
        let caller = cluster.nodes[0].system
        var found: [String] = []
        for k in 0..<200 where found.count < 4 {
            let address = try await cluster.nodes[0].locate(GPUActorID(type: "vector-index", key: "d\(k)"))
            if address.node == leaving.id { found.append("d\(k)") }
        }
        #expect(found.count == 4)
        let keys = found
        let record = WriteRecord()
        let writers = Task {
            await withTaskGroup(of: Void.self) { group in
                // Eight writers per index, so calls queue on each actor while the stop deactivates it.
                for key in keys {
                    for writer in 0..<8 {
                        group.addTask {
                            for i in writer * 1_000..<writer * 1_000 + 15 {
                                do {
                                    _ = try await caller.actor(VectorIndexActor.self, key: key).upsert(
                                        ids: [i], vectors: [Float](repeating: Float(i), count: dim))
                                    record.acknowledged.withLock { $0[key, default: []].append(i) }
                                } catch {
                                    record.failures.withLock { $0.append("\(key) #\(i): \(error)") }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Stop once the writers are well under way, while they keep writing.
        #expect(await eventually { record.acknowledged.withLock { $0.values.map(\.count).reduce(0, +) } >= 20 })
        await leaving.stop()
        await writers.value
        let failures = record.failures.withLock { $0 }
        #expect(failures.count == 0, "\(failures.prefix(3))")
        for key in keys {
            let stored = try await caller.actor(VectorIndexActor.self, key: key).idsInRowOrder()
            let acked = record.acknowledged.withLock { $0[key] ?? [] }
            #expect(
                Set(acked).isSubset(of: Set(stored)), "\(key): acknowledged but lost \(Set(acked).subtracting(stored))")
        }
        let row = try #require(try await cluster.membership.readAll().entry(of: leaving.id)?.entry)
        #expect(row.status == .dead && row.leftGracefully)
    }

    @Test("a hung database: each call times out, the node stops serving within its lease, the others expire it")
    func hungDatabase() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 2)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let hung = cluster.nodes[1]
        cluster.links[1].isHung = true
        // Its rounds give up on each call after databaseTimeout (1 s) instead of waiting for ever, so it notices that
        // it cannot renew and stops serving before the table ends its lease (3 s).
        #expect(await eventually(timeout: .seconds(60)) { !hung.isServing })
        #expect(try await cluster.membership.readAll().entry(of: hung.id)?.entry.status == .active)
        #expect(await cluster.expire(hung))
        // A call to an actor it held goes to the survivor.
        #expect(try await cluster.nodes[0].system.actor(EchoActor.self, key: "h").echo([1]) == [1])
        cluster.links[1].isHung = false
        #expect(await eventually(timeout: .seconds(20)) { hung.phase == .dead })
    }

    @Test("a client writes nothing to the directory: nodes place the actors it calls, also after a node died")
    func clientIsReadOnly() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 3)
        defer { Task { [cluster] in await cluster.stopAll() } }
        var options = InProcessCluster.options(port: 0)
        options.role = .client
        let readOnly = ReadOnlyDirectory(cluster.directory)
        let client = try ClusterNode(
            system: try cluster.makeSystem(), membership: cluster.membership, directory: readOnly,
            transport: InProcessNodeTransport(network: cluster.network), options: options)
        try await client.start()
        defer { Task { await client.stop() } }
        #expect(await eventually { client.view.active.count == 3 })
        for k in 0..<24 {
            #expect(try await client.system.actor(EchoActor.self, key: "ro-\(k)").echo([UInt8(k)]) == [UInt8(k)])
        }
        let placed = try await cluster.directory.all().filter { $0.id.key.hasPrefix("ro-") }
        #expect(placed.count == 24)
        #expect(Set(placed.map(\.node)).count == 3, "placement spread over the nodes")
        // Every actor has one instance, on the node the directory names.
        for address in placed {
            let node = try #require(cluster.nodes.first { $0.id == address.node })
            #expect(node.hosted[address.id] == address.activation)
        }
        // A node crashes; its actors move on the client's next calls, still without a write from the client.
        let victim = cluster.nodes[2]
        await victim.halt()
        #expect(await cluster.expire(victim))
        // Once the client's own round has seen the death (before that, a call to a cached location on the dead node
        // fails with nodeUnreachable, as documented).
        #expect(await eventually { client.view.entry(of: victim.id)?.entry.status == .dead })
        for k in 0..<24 {
            let reply = try await ClusterCall.$timeout.withValue(.seconds(20)) {
                try await client.system.actor(EchoActor.self, key: "ro-\(k)").echo([UInt8(k)])
            }
            #expect(reply == [UInt8(k)])
        }
        #expect(
            try await cluster.directory.all().filter { $0.id.key.hasPrefix("ro-") }.allSatisfy { $0.node != victim.id })
        #expect(readOnly.attemptedWrites.isEmpty, "\(readOnly.attemptedWrites.prefix(3))")
    }

    @Test("a failed activation gives up its directory entry; a later success registers again")
    func failedActivationUnregisters() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 2)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let system = cluster.nodes[0].system
        let id = GPUActorID(type: "trouble", key: "unplaceable-1")
        await #expect(throws: GPUBridgeError.backendUnavailable(backend: "test", reason: "\(id) refuses to activate")) {
            _ = try await system.actor(TroubleActor.self, key: id.key).wait(milliseconds: 1)
        }
        #expect(try await cluster.directory.lookup(id) == nil)
        #expect(cluster.nodes.allSatisfy { $0.hosted[id] == nil })
        // An actor that activates keeps its entry.
        #expect(try await system.actor(TroubleActor.self, key: "fine").wait(milliseconds: 1) == 1)
        #expect(try await cluster.directory.lookup(GPUActorID(type: "trouble", key: "fine")) != nil)
    }

    @Test("capacity counts active instances only: deactivated ones stop weighing on placement")
    func capacityCountsActiveOnly() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 1)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let node = cluster.nodes[0]
        let system = node.system
        for k in 0..<3 {
            _ = try await system.actor(VectorIndexActor.self, key: "c\(k)").upsert(
                ids: [k], vectors: [Float](repeating: 1, count: InProcessCluster.dim))
        }
        let reported = { try await cluster.membership.readAll().entry(of: node.id)?.entry.capacity.activations }
        #expect(try await eventually(timeout: .seconds(10)) { try await reported() == 3 })
        for k in 0..<3 { try await system.deactivate(GPUActorID(type: "vector-index", key: "c\(k)")) }
        #expect(node.hosted.count == 3)  // still this node's (the next call reactivates here)
        #expect(try await eventually(timeout: .seconds(10)) { try await reported() == 0 })
    }

    @Test("waitForView: answers when a round brings the awaited view, nil on timeout or cancellation")
    func waitForView() async throws {
        var cluster = InProcessCluster()
        try await cluster.start(count: 1)
        defer { Task { [cluster] in await cluster.stopAll() } }
        let node = cluster.nodes[0]
        // Already true: at once.
        #expect(await node.waitForView(timeout: .seconds(5), until: { $0.active.count == 1 })?.active.count == 1)
        // Never true: nil after the timeout.
        let started = ContinuousClock.now
        #expect(await node.waitForView(timeout: .milliseconds(300), until: { $0.active.count == 5 }) == nil)
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        // True after a second node joins: the first node's next round answers.
        let waiting = Task { await node.waitForView(timeout: .seconds(20), until: { $0.active.count == 2 }) }
        try await cluster.start(count: 1)
        #expect(await waiting.value?.active.count == 2)
        // Cancelled: nil, long before its timeout.
        let cancelled = Task { await node.waitForView(timeout: .seconds(60), until: { $0.active.count == 9 }) }
        try await Task.sleep(for: .milliseconds(50))
        cancelled.cancel()
        let cancelledAt = ContinuousClock.now
        #expect(await cancelled.value == nil)
        #expect(ContinuousClock.now - cancelledAt < .seconds(5))
    }

    @Test("bad options are rejected with the argument, the value and the limit")
    func badOptions() throws {
        let cluster = InProcessCluster()
        for (change, name) in [
            ({ (o: inout ClusterOptions) in o.port = 70_000 }, "port"),
            ({ $0.roundInterval = .zero }, "roundInterval"),
            ({ $0.leaseDuration = .seconds(2) }, "leaseDuration"),  // less than 3 rounds of 1 s
            ({ $0.leaseDuration = .seconds(7_200) }, "leaseDuration"),
            ({ $0.databaseTimeout = .zero }, "databaseTimeout"),
            ({ $0.databaseTimeout = .seconds(11) }, "databaseTimeout"),  // more than the lease
            ({ $0.deadRowRetention = .seconds(-1) }, "deadRowRetention"),
            ({ $0.drainTimeout = .seconds(-1) }, "drainTimeout"),
            ({ $0.locationCacheSize = 0 }, "locationCacheSize"),
            ({ $0.callTimeout = .zero }, "callTimeout"),
        ] as [((inout ClusterOptions) -> Void, String)] {
            var options = ClusterOptions()
            change(&options)
            let error = bridgeError {
                _ = try ClusterNode(
                    system: try cluster.makeSystem(), membership: cluster.membership,
                    directory: cluster.directory,
                    transport: InProcessNodeTransport(network: cluster.network), options: options)
            }
            guard case let .invalidArgument(got, _, _)? = error else {
                Issue.record("\(name): \(String(describing: error))"); continue
            }
            #expect(got == name)
        }
    }
}

/// What the writers of a test were told: acknowledged ids per key, and failures.
final class WriteRecord: Sendable {
    let acknowledged = Mutex<[String: [Int]]>([:])
    let failures = Mutex<[String]>([])
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
