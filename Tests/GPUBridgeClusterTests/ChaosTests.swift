import Foundation
import GPUBridge
import GPUBridgeActors
@testable import GPUBridgeCluster
import PostgresNIO
import Synchronization
import Testing

/// One network namespace of the fault harness: its name and the address of its end of the bridge.
struct ChaosNamespace: Sendable, Hashable {
    var name: String
    var address: String
}

/// The fault harness `scripts/chaos` sets up: network namespaces joined by a bridge, the database on the bridge's
/// address, and the `ip` tool to cut and heal links.
///
/// - `GPUBRIDGE_CHAOS_NAMESPACES`: `name=address` pairs separated by spaces (three namespaces).
/// - `GPUBRIDGE_CHAOS_DATABASE_ADDRESS`: the database's address on the bridge (what a partition from the database
///   cuts).
/// - `GPUBRIDGE_TEST_DATABASE_URL`: the database, reachable from every namespace and from this process.
enum Chaos {
    static let namespaces: [ChaosNamespace] = {
        let text = ProcessInfo.processInfo.environment["GPUBRIDGE_CHAOS_NAMESPACES"] ?? ""
        return text.split(separator: " ").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            return ChaosNamespace(name: String(parts[0]), address: String(parts[1]))
        }
    }()
    static let databaseAddress = ProcessInfo.processInfo.environment["GPUBRIDGE_CHAOS_DATABASE_ADDRESS"]
    /// Addresses for the latency proxies (`GPUBRIDGE_CHAOS_PROXIES`, separated by spaces) and the proxy itself
    /// (`GPUBRIDGE_CHAOS_PROXY_SCRIPT`, scripts/latency-proxy.py).
    static let proxyAddresses = (ProcessInfo.processInfo.environment["GPUBRIDGE_CHAOS_PROXIES"] ?? "").split(
        separator: " "
    ).map(String.init)
    static let proxyScript = ProcessInfo.processInfo.environment["GPUBRIDGE_CHAOS_PROXY_SCRIPT"]
    static let ipPath =
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        ?? "ip"
    static let available =
        namespaces.count >= 3 && databaseAddress != nil && ProcessClusterEnvironment.available && getuid() == 0

    /// Runs `ip arguments`; throws with its standard error when it fails.
    static func ip(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ipPath)
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw GPUBridgeError.backendFailure(
                backend: "ip", call: arguments.joined(separator: " "), code: Int(process.terminationStatus),
                message: text)
        }
    }

    /// Drops everything `namespace` sends to `address` (a blackhole route): one direction of a partition.
    static func cut(_ namespace: ChaosNamespace, to address: String) throws {
        try ip(["-n", namespace.name, "route", "replace", "blackhole", "\(address)/32"])
    }

    /// Removes the blackhole route `cut` added.
    static func heal(_ namespace: ChaosNamespace, to address: String) throws {
        try ip(["-n", namespace.name, "route", "del", "blackhole", "\(address)/32"])
    }

    /// Cuts both directions between `a` and `b`.
    static func partition(_ a: ChaosNamespace, _ b: ChaosNamespace) throws {
        try cut(a, to: b.address)
        try cut(b, to: a.address)
    }

    /// Removes every blackhole route the harness may have left in its namespaces.
    static func healAll() {
        for namespace in namespaces {
            for other in namespaces.map(\.address) + [databaseAddress ?? ""] where !other.isEmpty {
                try? heal(namespace, to: other)
            }
        }
    }
}

/// One call a chaos client made: when it started and ended (this process's clock), the actor, and the activation that
/// served it (nil when it failed).
struct ChaosCall: Sendable {
    var key: String
    var started: ContinuousClock.Instant
    var ended: ContinuousClock.Instant
    var token: Int64?
    var error: String?
}

/// Clients streaming calls at a cluster while faults happen, recording every answer: `stamp` calls to echo actors (which
/// activation served) and upserts to vector indexes (which rows were acknowledged).
final class ChaosWorkload: Sendable {
    let echoKeys: [String]
    let indexKeys: [String]
    private let calls = Mutex<[ChaosCall]>([])
    private let acknowledged = Mutex<[String: Set<Int>]>([:])
    /// Each acknowledged upsert in order: key, id, the vector count it returned, when it was acknowledged.
    private let acknowledgements = Mutex<[(key: String, id: Int, count: Int, at: ContinuousClock.Instant)]>([])
    private let stopped = Atomic<Bool>(false)

    init(echoKeys: Int = 12, indexKeys: Int = 3) {
        self.echoKeys = (0..<echoKeys).map { "chaos-echo-\($0)" }
        self.indexKeys = (0..<indexKeys).map { "chaos-index-\($0)" }
    }

    /// Runs `workers` stamp callers and one upserting caller per index through `client` until `stop()`.
    func run(_ client: ClusterNode, workers: Int = 4) -> Task<Void, Never> {
        Task {
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    group.addTask {
                        var turn = worker
                        while !self.stopped.load(ordering: .acquiring) {
                            let key = self.echoKeys[turn % self.echoKeys.count]
                            turn += workers
                            let started = ContinuousClock.now
                            do {
                                let stamp = try await ClusterCall.$timeout.withValue(.seconds(3)) {
                                    try await client.system.actor(EchoActor.self, key: key).stamp()
                                }
                                self.record(ChaosCall(key: key, started: started, ended: .now, token: stamp.token))
                            } catch {
                                self.record(
                                    ChaosCall(key: key, started: started, ended: .now, token: nil, error: "\(error)"))
                                try? await Task.sleep(for: .milliseconds(20))
                            }
                        }
                    }
                }
                for (n, key) in self.indexKeys.enumerated() {
                    group.addTask {
                        var id = n * 1_000_000
                        while !self.stopped.load(ordering: .acquiring) {
                            id += 1
                            do {
                                let count = try await ClusterCall.$timeout.withValue(.seconds(3)) {
                                    try await client.system.actor(VectorIndexActor.self, key: key).upsert(
                                        ids: [id],
                                        vectors: [Float](repeating: Float(id % 97), count: ProcessCluster.dim))
                                }
                                _ = self.acknowledged.withLock { $0[key, default: []].insert(id) }
                                self.acknowledgements.withLock { $0.append((key, id, count, .now)) }
                            } catch {
                                try? await Task.sleep(for: .milliseconds(20))
                            }
                        }
                    }
                }
            }
        }
    }

    func stop() { stopped.store(true, ordering: .releasing) }

    private func record(_ call: ChaosCall) { calls.withLock { $0.append(call) } }

    var all: [ChaosCall] { calls.withLock { $0 } }
    var acknowledgedRows: [String: Set<Int>] { acknowledged.withLock { $0 } }

    /// The acknowledged upserts of `key` in order, one line each (id, returned count, seconds since `origin`).
    func acknowledgementLog(of key: String, since origin: ContinuousClock.Instant) -> [String] {
        acknowledgements.withLock { list in
            list.filter { $0.key == key }.map { "id \($0.id) count \($0.count) at \($0.at - origin)" }
        }
    }

    /// Successful calls since `instant`.
    func successes(since instant: ContinuousClock.Instant) -> Int {
        all.filter { $0.token != nil && $0.started >= instant }.count
    }

    /// Single activation, as the calls show it: for each actor, no activation served a call that started after a
    /// call served by a later activation (a higher token) had ended. Each violation is described.
    static func staleServes(_ calls: [ChaosCall]) -> [String] {
        var violations: [String] = []
        for (key, served) in Dictionary(grouping: calls.filter { $0.token != nil }, by: \.key) {
            var firstEnd: [Int64: ContinuousClock.Instant] = [:]
            var lastStart: [Int64: ContinuousClock.Instant] = [:]
            for call in served {
                let token = call.token!
                firstEnd[token] = min(firstEnd[token] ?? call.ended, call.ended)
                lastStart[token] = max(lastStart[token] ?? call.started, call.started)
            }
            let tokens = firstEnd.keys.sorted()
            for (i, older) in tokens.enumerated() {
                for newer in tokens[(i + 1)...] where lastStart[older]! > firstEnd[newer]! {
                    violations.append("\(key): activation #\(older) served a call after #\(newer) had served one")
                }
            }
        }
        return violations.sorted()
    }
}

/// Faults injected into a real network: node processes in their own network namespaces, links cut with blackhole
/// routes, the database cut off, processes paused and killed; clients stream calls throughout and a checker looks at
/// every answer. Run by `scripts/chaos` (root, iproute2, PostgreSQL); see docs/RELIABILITY.md.
@Suite(
    "Chaos: partitions, database outages, zombies and stops in network namespaces",
    .serialized,
    .enabled(
        if: Chaos.available,
        "needs root, network namespaces and a database on their bridge: run scripts/chaos"))
struct ChaosTests {
    /// Rounds of 300 ms and a 3 s lease (`ProcessCluster.startNode`): a node whose lease ends is Dead within the lease
    /// plus two rounds, plus a database call; the checks allow a second more for a loaded machine.
    static let detectionBound = Duration.seconds(5)

    /// What a scenario's fault works with: the cluster, its node processes and their ids, the client and the
    /// workload streaming through it.
    struct Scenario {
        let cluster: ProcessCluster
        let nodes: [NodeProcess]
        let ids: [NodeID]
        let client: ClusterNode
        let workload: ChaosWorkload
    }

    /// One node per namespace (the first `count`), each listening on its namespace's address.
    static func namespaceNodes(_ count: Int) -> (ProcessCluster) async throws -> [NodeProcess] {
        { cluster in try Chaos.namespaces.prefix(count).map { try cluster.startNode(namespace: $0) } }
    }

    /// Runs one scenario: starts the nodes (`namespaceNodes(3)` unless `start` says otherwise), a client in this
    /// process and the workload; once every actor has answered, runs `fault`; then the checks every scenario ends
    /// with (`finish`). Links are healed however it ends.
    static func scenario(
        nodes start: (ProcessCluster) async throws -> [NodeProcess] = namespaceNodes(3),
        clientTimeout: Duration = .seconds(3), _ fault: (Scenario) async throws -> Void
    ) async throws {
        try await ProcessCluster.run { cluster in
            Chaos.healAll()
            defer { Chaos.healAll() }
            let nodes = try await start(cluster)
            var ids: [NodeID] = []
            for node in nodes { ids.append(try await node.waitReady()) }
            let client = try await cluster.client { $0.callTimeout = clientTimeout }
            #expect(await eventually(timeout: .seconds(20)) { client.view.active.count == nodes.count })
            let workload = ChaosWorkload()
            let began = ContinuousClock.now
            let run = workload.run(client)
            defer { workload.stop() }  // a scenario that throws leaves no callers running
            // The fault comes once calls flow: every key has been served at least once.
            #expect(
                await eventually(timeout: .seconds(30)) {
                    Set(workload.all.filter { $0.token != nil && $0.started >= began }.map(\.key)).count
                        == workload.echoKeys.count
                })
            try await fault(Scenario(cluster: cluster, nodes: nodes, ids: ids, client: client, workload: workload))
            try await finish(cluster, client, workload, run)
        }
    }

    /// The checks every scenario ends with: the cluster serves every actor again, no activation served after its
    /// successor, no acknowledged row is missing. The callers are stopped and waited for before the rows are read: an
    /// upsert still in flight could otherwise be acknowledged after the read saw the index without it.
    static func finish(
        _ cluster: ProcessCluster, _ client: ClusterNode, _ workload: ChaosWorkload, _ run: Task<Void, Never>
    ) async throws {
        let healed = ContinuousClock.now
        #expect(
            await eventually(timeout: .seconds(30)) {
                workload.successes(since: healed) >= 3 * workload.echoKeys.count
            },
            "the cluster did not serve again after the fault")
        workload.stop()
        await run.value
        let calls = workload.all
        let failed = calls.filter { $0.error != nil }
        print(
            "chaos: \(calls.count) stamp calls, \(failed.count) failed, "
                + "\(Set(calls.compactMap(\.token)).count) activations; "
                + "acknowledged rows: \(workload.acknowledgedRows.mapValues(\.count))")
        let stale = ChaosWorkload.staleServes(calls)
        #expect(stale.isEmpty, "\(stale.prefix(5))")
        for key in workload.indexKeys {
            let stored = Set(
                try await ClusterCall.$timeout.withValue(.seconds(20)) {
                    try await client.system.actor(VectorIndexActor.self, key: key).idsInRowOrder()
                })
            let lost = workload.acknowledgedRows[key, default: []].subtracting(stored)
            #expect(lost.isEmpty, "\(key): \(lost.count) acknowledged rows lost, e.g. \(lost.sorted().prefix(5))")
            if !lost.isEmpty { await explainLoss(of: key, stored: stored.count, in: cluster, workload) }
        }
    }

    /// What a failed durability check needs to be understood: the acknowledgements in order, the actor's head and
    /// journal rows in the database, and what the node processes logged about the actor.
    static func explainLoss(
        of key: String, stored: Int, in cluster: ProcessCluster, _ workload: ChaosWorkload
    ) async {
        let origin = workload.all.first?.started ?? .now
        print("chaos: \(key): \(stored) rows stored; acknowledgements (seconds since the first call):")
        for line in workload.acknowledgementLog(of: key, since: origin) { print("  \(line)") }
        let name = cluster.name
        do {
            try await cluster.store.withConnection("explain a loss") { connection in
                for row in try await connection.query(
                    """
                    SELECT epoch, token, snapshot_epoch, snapshot_seq, byte_count, updated_at::text FROM gb_actor_head
                    WHERE cluster = \(name) AND actor_key = \(key)
                    """, logger: cluster.store.logger
                ).collect() {
                    print("  head: \(try row.decode((Int64, Int64, Int64?, Int64?, Int64?, String).self))")
                }
                for row in try await connection.query(
                    """
                    SELECT seq, epoch, call_id, length(bytes) FROM gb_actor_journal
                    WHERE cluster = \(name) AND actor_key = \(key) ORDER BY seq
                    """, logger: cluster.store.logger
                ).collect() {
                    print("  journal: \(try row.decode((Int64, Int64, String?, Int32).self))")
                }
            }
        } catch {
            print("  (the database could not be read: \(error))")
        }
        for process in cluster.processes {
            let lines = process.errors.split(separator: "\n").filter { $0.contains(key) }
            print("---- \(process.name): \(lines.count) log lines about \(key) ----")
            for line in lines.suffix(40) { print(line) }
        }
    }

    /// Polls the membership table for `duration`; returns the nodes seen Dead.
    static func deaths(in cluster: ProcessCluster, during duration: Duration) async throws -> Set<NodeID> {
        var dead: Set<NodeID> = []
        let until = ContinuousClock.now + duration
        while ContinuousClock.now < until {
            for row in try await cluster.membership.readAll().entries where row.entry.status == .dead {
                dead.insert(row.entry.node)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        return dead
    }

    /// Waits until `node`'s row is Dead; how long that took from `since`.
    static func timeToDead(
        _ node: NodeID, in cluster: ProcessCluster, since: ContinuousClock.Instant
    ) async throws -> Duration? {
        let ok = await eventually(timeout: .seconds(30)) {
            (try? await cluster.membership.readAll().entry(of: node)?.entry.status) == .dead
        }
        return ok ? ContinuousClock.now - since : nil
    }

    /// Cuts the namespaces of each pair from each other for 8 s, checks that nobody was declared dead, heals.
    static func partition(_ pairs: [(Int, Int)], in scenario: Scenario) async throws {
        for (a, b) in pairs { try Chaos.partition(Chaos.namespaces[a], Chaos.namespaces[b]) }
        let dead = try await deaths(in: scenario.cluster, during: .seconds(8))
        Chaos.healAll()
        #expect(dead.isEmpty, "declared dead: \(dead)")
        #expect(try await scenario.cluster.membership.readAll().active.map(\.node).sorted() == scenario.ids.sorted())
    }

    @Test("one node cut off from the others, not from the database, for 8 s: nobody dies; healed, all serve")
    func partitionOneNode() async throws {
        try await Self.scenario { try await Self.partition([(0, 1), (0, 2)], in: $0) }
    }

    @Test("a two-node cluster partitioned in half for 8 s: neither dies; healed, both serve")
    func partitionInHalf() async throws {
        try await Self.scenario(nodes: Self.namespaceNodes(2)) { try await Self.partition([(0, 1)], in: $0) }
    }

    @Test("the database unreachable for 6 s (two leases): nodes stop serving, end, are restarted and serve again")
    func databaseOutage() async throws {
        try await Self.scenario { scenario in
            let database = try #require(Chaos.databaseAddress)
            let cutAt = ContinuousClock.now
            for namespace in Chaos.namespaces.prefix(3) { try Chaos.cut(namespace, to: database) }
            try await Task.sleep(for: .seconds(6))  // the outage itself
            // No call may be served by a node past its serving window: from 3 s after the cut (the lease) on, every
            // stamp call fails.
            let servedLate = scenario.workload.all.filter {
                $0.token != nil && $0.started > cutAt + .milliseconds(3_100)
            }
            #expect(servedLate.isEmpty, "\(servedLate.count) calls were served after every lease had ended")
            Chaos.healAll()
            // Back on the database, each node finds its lease ended and exits 1; a supervisor starts new ones.
            for node in scenario.nodes {
                #expect(await node.waitExit(timeout: .seconds(30)) == 1, "\(node.name): \(node.errors.suffix(3000))")
            }
            let rows = try await scenario.cluster.membership.readAll()
            #expect(scenario.ids.allSatisfy { rows.entry(of: $0)?.entry.status == .dead })
            let restarted = try await Self.namespaceNodes(3)(scenario.cluster)
            for node in restarted { _ = try await node.waitReady() }
        }
    }

    @Test("a node paused (SIGSTOP) past its lease, then resumed: it is Dead in time, serves nothing after, exits")
    func zombie() async throws {
        try await Self.scenario { scenario in
            let paused = scenario.nodes[1]
            kill(paused.pid, SIGSTOP)
            let pausedAt = ContinuousClock.now
            let took = try await Self.timeToDead(scenario.ids[1], in: scenario.cluster, since: pausedAt)
            print("chaos: the paused node was Dead \(took.map { "\($0)" } ?? "never") after SIGSTOP")
            #expect(took.map { $0 <= Self.detectionBound } ?? false, "\(String(describing: took))")
            try await Task.sleep(for: .seconds(2))  // paused on past its death
            kill(paused.pid, SIGCONT)
            #expect(await paused.waitExit(timeout: .seconds(30)) == 1)
        }
    }

    @Test(
        "200 ms each way between nodes and to clients (a delaying proxy): slower calls, no death, nothing else changes")
    func latency() async throws {
        let script = try #require(Chaos.proxyScript)
        try #require(Chaos.proxyAddresses.count >= 3)
        let proxies = ProxyProcesses()
        defer { proxies.killAll() }
        let start: (ProcessCluster) async throws -> [NodeProcess] = { cluster in
            try Chaos.namespaces.prefix(3).enumerated().map { i, namespace in
                let port = 7_300 + i
                try proxies.start(
                    script: script, listen: Chaos.proxyAddresses[i], target: namespace.address, port: port,
                    delayMilliseconds: 200)
                // Every peer and client reaches the node through its proxy: the advertised address.
                return try cluster.startNode(
                    extra: ["--advertise", "\(Chaos.proxyAddresses[i]):\(port)"], namespace: namespace, port: port)
            }
        }
        try await Self.scenario(nodes: start, clientTimeout: .seconds(5)) { scenario in
            #expect(Set(scenario.ids.map(\.host)) == Set(Chaos.proxyAddresses.prefix(3)))
            let dead = try await Self.deaths(in: scenario.cluster, during: .seconds(10))
            #expect(dead.isEmpty, "declared dead: \(dead)")
            // The delay is real: a served call takes at least one round trip through the proxy (400 ms).
            let served = scenario.workload.all.filter { $0.token != nil }.map { $0.ended - $0.started }.sorted()
            #expect(served.count >= 12)
            let median = served.isEmpty ? .zero : served[served.count / 2]
            print("chaos: with 200 ms each way, \(served.count) calls served, median \(median)")
            #expect(median >= .milliseconds(400))
        }
    }

    @Test("SIGTERM leaves gracefully; SIGKILL during a graceful stop: Dead within the lease, nothing acknowledged lost")
    func stops() async throws {
        try await Self.scenario { scenario in
            let (nodes, ids) = (scenario.nodes, scenario.ids)
            nodes[0].sigterm()
            #expect(await nodes[0].waitExit(timeout: .seconds(30)) == 0)
            let left = try #require(try await scenario.cluster.membership.readAll().entry(of: ids[0])?.entry)
            #expect(left.status == .dead && left.leftGracefully)
            // Calls flow again through the two that are left before the next fault.
            let moved = ContinuousClock.now
            #expect(await eventually(timeout: .seconds(30)) { scenario.workload.successes(since: moved) >= 24 })
            nodes[1].sigterm()
            nodes[1].kill9()
            let killedAt = ContinuousClock.now
            let took = try await Self.timeToDead(ids[1], in: scenario.cluster, since: killedAt)
            print("chaos: the node killed during its graceful stop was Dead \(took.map { "\($0)" } ?? "never") after")
            #expect(took.map { $0 <= Self.detectionBound } ?? false, "\(String(describing: took))")
        }
    }
}

/// The latency proxies of a scenario (`scripts/latency-proxy.py`), killed when it ends.
final class ProxyProcesses: Sendable {
    private let processes = Mutex<[Process]>([])

    func start(script: String, listen: String, target: String, port: Int, delayMilliseconds: Int) throws {
        let proxy = Process()
        proxy.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        proxy.arguments = ["python3", script, listen, "\(port)", target, "\(port)", "\(delayMilliseconds)"]
        // Not this process's pipes: a proxy left behind must not hold the test runner's output open.
        proxy.standardOutput = FileHandle.nullDevice
        proxy.standardError = FileHandle.nullDevice
        try proxy.run()
        processes.withLock { $0.append(proxy) }
    }

    func killAll() {
        for proxy in processes.withLock({ $0 }) where proxy.isRunning {
            kill(proxy.processIdentifier, SIGKILL)
            proxy.waitUntilExit()
        }
    }
}

@Suite("Chaos checker")
struct ChaosCheckerTests {
    @Test("staleServes finds an activation serving after its successor served, and nothing in a clean history")
    func staleServes() {
        let t0 = ContinuousClock.now
        func call(_ key: String, _ from: Int, _ to: Int, _ token: Int64?) -> ChaosCall {
            ChaosCall(
                key: key, started: t0 + .milliseconds(from), ended: t0 + .milliseconds(to), token: token,
                error: token == nil ? "failed" : nil)
        }
        // Activation 1 serves, fails over, activation 2 serves; overlapping calls at the switch are allowed (either
        // may have been served first); failed calls do not count.
        let clean = [
            call("a", 0, 10, 1), call("a", 5, 30, 1), call("a", 20, 40, 2), call("a", 50, 60, 2),
            call("a", 70, 80, nil),
            call("b", 0, 10, 7), call("b", 100, 110, 7),
        ]
        #expect(ChaosWorkload.staleServes(clean).isEmpty)
        // Activation 1 serves a call that started after a call of activation 2 had ended: two activations served.
        let stale = clean + [call("a", 65, 70, 1)]
        #expect(ChaosWorkload.staleServes(stale) == ["a: activation #1 served a call after #2 had served one"])
    }
}
