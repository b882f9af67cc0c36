import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import GPUBridgeTestSupport
import Synchronization
import Testing

/// Real `gpubridge node` processes on loopback: gRPC with mutual TLS between them, membership, directory and actor
/// state in the test PostgreSQL server (scripts/test starts one). Each test makes its own cluster name.
@Suite(
    "Cluster of node processes over gRPC, mutual TLS and PostgreSQL",
    .serialized,
    // Needs a PostgreSQL server (scripts/test starts one and sets GPUBRIDGE_TEST_DATABASE_URL) and the built
    // gpubridge executable next to the test bundle (or GPUBRIDGE_BIN).
    .enabled(
        if: ProcessClusterEnvironment.available,
        "needs GPUBRIDGE_TEST_DATABASE_URL (scripts/test starts a server) and the built gpubridge executable"))
struct ProcessClusterTests {
    @Test("three node processes: vector indexes spread over them answer exactly as in a single process")
    func threeNodes() async throws {
        try await ProcessCluster.run { cluster in
            let ids = try await cluster.startNodes(3)
            let client = try await cluster.client()
            let reference = try InProcessCluster.cpuSystem(
                storage: InMemoryActorStorage(), register: ProcessCluster.registerActors)
            let dim = ProcessCluster.dim
            var random = SplitMix64(seed: 21)
            for t in 0..<24 {
                let rows = random.floats(50 * dim, -1, 1)
                let keys = Array(t * 1000..<t * 1000 + 50)
                let queries = random.floats(4 * dim, -1, 1)
                let remote = try client.system.actor(VectorIndexActor.self, key: "tenant-\(t)")
                let local = try reference.actor(VectorIndexActor.self, key: "tenant-\(t)")
                #expect(try await remote.upsert(ids: keys, vectors: rows) == 50)
                _ = try await local.upsert(ids: keys, vectors: rows)
                _ = try await remote.delete(ids: [keys[3], keys[17]])
                _ = try await local.delete(ids: [keys[3], keys[17]])
                #expect(try await remote.query(queries, k: 7) == (try await local.query(queries, k: 7)))
                #expect(try await remote.vectorCount() == 48)
            }
            let placed = Dictionary(grouping: try await cluster.directory.all(), by: \.node)
            #expect(Set(placed.keys).isSubset(of: Set(ids)))
            #expect(placed.values.reduce(0) { $0 + $1.count } == 24)
            // Capacity-weighted rendezvous over three equal nodes: 24 indexes land on more than one node.
            #expect(placed.count >= 2, "placements per node: \(placed.mapValues(\.count))")
            let rows = try await cluster.membership.readAll().entries.map(\.entry)
            #expect(rows.filter { $0.status == .active }.count == 3)
            #expect(rows.allSatisfy { $0.capacity.devices.first?.backend == "cpu" })
            // Each node's metrics file counts the calls it served: 4 per index, 96 in all.
            let served = {
                cluster.processes.map { $0.metric("gpubridge_cluster_calls_served_total", folder: cluster.folder) ?? 0 }
            }
            #expect(
                await eventually(timeout: .seconds(10)) { served().reduce(0, +) == 96 }, "served per node: \(served())")
            for (process, id) in zip(cluster.processes, ids) {
                let hosted = Double(placed[id]?.count ?? 0)
                #expect(
                    await eventually(timeout: .seconds(10)) {
                        process.metric("gpubridge_cluster_activations", folder: cluster.folder) == hosted
                    }, "\(process.name)")
            }
        }
    }

    @Test(
        "three nodes with --http: each /metrics counts the calls that node served, each is ready, any node's API lists all three"
    )
    func operationsEndpoint() async throws {
        try await ProcessCluster.run { cluster in
            let started = try (0..<3).map { _ in try cluster.startNode(extra: ["--http", "127.0.0.1:0"]) }
            var ids: [NodeID] = []
            for p in started { ids.append(try await p.waitReady()) }
            func httpPort(_ process: NodeProcess) -> Int? {
                guard
                    let line = process.output.split(separator: "\n").first(where: { $0.contains(#""event":"http""#) }),
                    let colon = line.lastIndex(of: ":")
                else { return nil }
                return Int(line[line.index(after: colon)...].prefix { $0.isNumber })
            }
            var ports: [Int] = []
            for process in started {
                #expect(await eventually(timeout: .seconds(30)) { httpPort(process) != nil }, "\(process.name)")
                ports.append(try #require(httpPort(process)))
            }
            let client = try await cluster.client()
            for t in 0..<12 {
                let index = try client.system.actor(VectorIndexActor.self, key: "ops-\(t)")
                #expect(
                    try await index.upsert(ids: [t], vectors: [Float](repeating: 1, count: ProcessCluster.dim)) == 1)
                #expect(try await index.vectorCount() == 1)
            }
            let placed = Dictionary(grouping: try await cluster.directory.all(), by: \.node)
            // Each node's endpoint counts what it served (2 calls per index it hosts), labelled with its id.
            for i in 0..<3 {
                let expected = Double(2 * (placed[ids[i]]?.count ?? 0))
                #expect(
                    await eventually(timeout: .seconds(10)) { (try? servedCalls(port: ports[i])) == expected },
                    "node \(i): \(String(describing: try? servedCalls(port: ports[i]))), expected \(expected)")
                let metrics = try HTTPGet.fetch(host: "127.0.0.1", port: ports[i], path: "/metrics").body
                #expect(metrics.contains(#"gpubridge_device_info{device="cpu:0""#))
                #expect(metrics.contains(#"node="\#(ids[i])"}"#))
                let actors = try HTTPGet.fetch(host: "127.0.0.1", port: ports[i], path: "/api/v1/actors").body
                #expect(actors.contains(#""node":"\#(ids[i])""#), "\(actors)")
                let ready = try HTTPGet.fetch(host: "127.0.0.1", port: ports[i], path: "/health/ready")
                #expect(ready.status == 200, "\(ready.body)")
            }
            // Any node's cluster API lists all three, Active. It shows that node's view, read from the table once a
            // round (300 ms here), so a node that became Active after the last read still shows as Joining there
            // until the next round: wait a few rounds for it.
            var view = try HTTPGet.fetch(host: "127.0.0.1", port: ports[1], path: "/api/v1/cluster")
            func activeCount() -> Int { view.body.components(separatedBy: #""status":"Active""#).count - 1 }
            let allActive = await eventually(timeout: .seconds(10)) {
                guard activeCount() < 3 else { return true }
                view = (try? HTTPGet.fetch(host: "127.0.0.1", port: ports[1], path: "/api/v1/cluster")) ?? view
                return activeCount() == 3
            }
            #expect(allActive, "\(view.body)")
            #expect(view.status == 200)
            for id in ids {
                #expect(view.body.contains(#""host":"\#(id.host)","port":\#(id.port)"#), "\(id) missing: \(view.body)")
            }
            #expect(activeCount() == 3, "\(view.body)")
            // ... with each node's devices, from the shared table (what the dashboard's cluster table shows).
            #expect(view.body.components(separatedBy: #""id":"cpu:0""#).count - 1 == 3, "\(view.body)")
        }
    }

    @Test("concurrent first calls from several clients to one key create exactly one activation")
    func oneActivationAcrossProcesses() async throws {
        try await ProcessCluster.run { cluster in
            _ = try await cluster.startNodes(3)
            var clients: [ClusterNode] = []
            for _ in 0..<3 { clients.append(try await cluster.client()) }
            for round in 0..<4 {
                let key = "hot-\(round)"
                let total = try await withThrowingTaskGroup(of: Int.self) { group in
                    for i in 0..<45 {
                        let system = clients[i % clients.count].system
                        group.addTask {
                            try await system.actor(EchoActor.self, key: key).echo([UInt8(i)]).first.map(Int.init) ?? -1
                        }
                    }
                    return try await group.reduce(0, +)
                }
                #expect(total == (0..<45).reduce(0, +))
                let entries = try await cluster.directory.all().filter { $0.id == GPUActorID(type: "echo", key: key) }
                #expect(entries.count == 1)
                // Every one of the 45 calls reached the same activation.
                #expect(try await clients[0].system.actor(EchoActor.self, key: key).callCount() == 45)
            }
        }
    }

    @Test("--transport tcp: node processes serve an in-process client and gpubridge call processes over mutual TLS")
    func tcpTransport() async throws {
        try await ProcessCluster.run { cluster in
            let started = try (0..<2).map { _ in try cluster.startNode(extra: ["--transport", "tcp"]) }
            var ids: [NodeID] = []
            for process in started { ids.append(try await process.waitReady()) }
            let client = try await cluster.client(wire: .tcp)
            for t in 0..<8 {
                let bytes = [UInt8(t), 1, 2, 3]
                #expect(try await client.system.actor(EchoActor.self, key: "tcp-\(t)").echo(bytes) == bytes)
            }
            let placed = try await cluster.directory.all().map(\.node)
            #expect(placed.count == 8 && Set(placed).isSubset(of: Set(ids)))
            let outcome = try await cluster.call([["echo", "tcp-0", "echo", "--text", "hi", "--transport", "tcp"]])
            #expect(outcome.first?.status == 0, "\(outcome)")
            #expect(outcome.first?.output.contains(#""result":"hi""#) == true, "\(outcome)")
            #expect(try await client.system.actor(EchoActor.self, key: "tcp-0").callCount() == 2)
        }
    }

    @Test("gpubridge call: client processes racing to one key make one activation; an index's rows cross processes")
    func callProcesses() async throws {
        try await ProcessCluster.run { cluster in
            let ids = try await cluster.startNodes(2)
            let racing = try await cluster.call((0..<4).map { ["echo", "race", "echo", "--text", "from-\($0)"] })
            for (i, outcome) in racing.enumerated() {
                #expect(outcome.status == 0, "\(outcome.output)")
                #expect(outcome.output.contains(#""result":"from-\#(i)""#), "\(outcome.output)")
            }
            let nodes = Set(
                racing.compactMap { outcome -> String? in
                    guard let range = outcome.output.range(of: #""node":""#) else { return nil }
                    return String(outcome.output[range.upperBound...].prefix { $0 != "\"" })
                })
            #expect(nodes.count == 1, "the racing calls named \(nodes)")
            #expect(
                try await cluster.directory.all().filter { $0.id == GPUActorID(type: "echo", key: "race") }.count == 1)
            let count = try await cluster.call([["echo", "race", "count"]])
            #expect(count.first?.output.contains(#""result":4"#) == true, "\(count)")

            // One process writes rows, another queries them: the index lives on its node, not in the callers.
            let upsert = try await cluster.call([
                ["vector-index", "shared", "upsert-random", "--rows", "200", "--seed", "5"]
            ])
            #expect(upsert.first?.output.contains(#""result":200"#) == true, "\(upsert)")
            let query = try await cluster.call([["vector-index", "shared", "query-random", "--k", "1", "--seed", "5"]])
            // The query vector with seed 5 is the first row written with seed 5 (id 0): cosine 1.
            #expect(query.first?.output.contains(#""id":0"#) == true, "\(query)")
            #expect(ids.contains { query.first?.output.contains($0.description) == true })
            let bad = try await cluster.call([["echo", "race", "no-such-method"]])
            #expect(bad.first?.status == 64, "\(bad)")
            #expect(bad.first?.output.contains("unknown method 'no-such-method' of echo") == true, "\(bad)")
        }
    }

    @Test(
        "kill -9 of a node: calls fail clearly or are retried, its row turns Dead, its actors come back elsewhere with every acknowledged write"
    )
    func killNine() async throws {
        try await ProcessCluster.run { cluster in
            let ids = try await cluster.startNodes(3)
            let client = try await cluster.client()
            // A client that retries calls to an unreachable node until the actor is reachable again (idempotent reads).
            let patient = try await cluster.client { $0.retryUnreachableFor = .seconds(30) }
            let dim = ProcessCluster.dim
            var random = SplitMix64(seed: 33)
            // Per index: the count and answers at the checkpoint, and after one more row journaled after it.
            var expected: [String: (count: Int, queries: [Float], hits: [[VectorHit]], laterHits: [[VectorHit]])] = [:]
            for t in 0..<9 {
                let key = "index-\(t)"
                let index = try client.system.actor(VectorIndexActor.self, key: key)
                _ = try await index.upsert(ids: Array(0..<20 + t), vectors: random.floats((20 + t) * dim, -1, 1))
                try await index.checkpoint()
                let queries = random.floats(2 * dim, -1, 1)
                let hits = try await index.query(queries, k: 5)
                // Written after the snapshot: durable in the journal, so it survives the node's death too.
                _ = try await index.upsert(ids: [9_999], vectors: queries.prefix(dim).map { $0 * 2 })
                expected[key] = (20 + t, queries, hits, try await index.query(queries, k: 5))
                #expect(expected[key]!.laterHits != hits)
            }
            let placed = Dictionary(grouping: try await cluster.directory.all(), by: \.node)
            let victimID = try #require(placed.max { $0.value.count < $1.value.count }?.key)
            let victim = try #require(cluster.processes.first { $0.readyID == victimID })
            let onVictim = try #require(placed[victimID]).map(\.id.key)

            // Calls in flight while the node dies. Workers call the victim's indexes back to back from before the kill
            // until each has made one call that started after it; every call records when it started and ended and how
            // it ended. "In flight at the kill" is a call that started before kill(2) was sent and ended after it
            // returned.
            let log = CallLog()
            let system = client.system
            let workers = Task {
                await withTaskGroup(of: Void.self) { group in
                    for w in 0..<12 {
                        group.addTask {
                            var i = w
                            while true {
                                let key = onVictim[i % onVictim.count]
                                i += 12
                                let started = ContinuousClock.now
                                let outcome: String
                                do {
                                    _ = try await system.actor(VectorIndexActor.self, key: key).vectorCount()
                                    outcome = "ok"
                                } catch let error as ClusterError {
                                    outcome = Self.kind(of: error)
                                } catch {
                                    outcome = "other: \(error)"
                                }
                                log.record(CallRecord(started: started, ended: ContinuousClock.now, outcome: outcome))
                                if let at = log.killed, started > at { return }
                            }
                        }
                    }
                }
            }
            // The workers are busy (calls are completing) before the signal is sent.
            #expect(await eventually(timeout: .seconds(10)) { log.count >= 50 })
            let signalled = ContinuousClock.now
            victim.kill9()
            let delivered = ContinuousClock.now
            log.killed = delivered
            // The patient client calls at once, before the death is declared: it retries until the index is back.
            let first = try #require(onVictim.first)
            let patientCall = Task { try await patient.system.actor(VectorIndexActor.self, key: first).vectorCount() }
            await workers.value
            let calls = log.all
            let inFlight = calls.filter { $0.started < signalled && $0.ended > delivered }
            let endings = Dictionary(grouping: inFlight, by: \.outcome).mapValues(\.count)
            print("kill -9: \(calls.count) calls in all, \(inFlight.count) in flight at the signal, ended: \(endings)")
            #expect(!inFlight.isEmpty, "no call was in flight when the signal was sent")
            // Each ended: returned (its reply was on the way) or failed with a ClusterError saying the node was
            // unreachable or the deadline passed; none with anything else, and none hung (the workers all finished).
            let expectedEndings: Set = ["ok", "nodeUnreachable", "deadlineExceeded"]
            #expect(inFlight.allSatisfy { expectedEndings.contains($0.outcome) }, "\(endings)")
            #expect(calls.allSatisfy { !$0.outcome.hasPrefix("other:") }, "\(Set(calls.map(\.outcome)))")
            // The calls made after the kill reached no process and said so.
            let after = calls.filter { $0.started > delivered }
            #expect(after.count >= 12)
            let afterEndings = Dictionary(grouping: after, by: \.outcome).mapValues(\.count)
            #expect(after.allSatisfy { $0.outcome == "nodeUnreachable" }, "\(afterEndings)")
            #expect(await victim.waitExit() == SIGKILL)
            #expect(victim.process.terminationReason == .uncaughtSignal)

            // Its lease ends and a survivor writes it Dead (not a graceful leave).
            #expect(
                await eventually(timeout: .seconds(30)) {
                    (try? await cluster.membership.readAll().entry(of: victimID)?.entry.status) == .dead
                })
            let row = try #require(try await cluster.membership.readAll().entry(of: victimID)?.entry)
            #expect(!row.leftGracefully)

            #expect(try await patientCall.value == expected[first]!.count + 1)
            // The client learns of the death at its next membership round (until then a location it cached before the
            // kill still names the victim: docs/CLUSTER.md, calls during a death).
            #expect(await eventually(timeout: .seconds(10)) { client.view.entry(of: victimID)?.entry.status == .dead })
            // The victim's indexes answer from a survivor with every acknowledged row (snapshot + journal replay); the
            // others lost nothing either.
            for (key, want) in expected {
                let index = try client.system.actor(VectorIndexActor.self, key: key)
                #expect(try await index.vectorCount() == want.count + 1, "\(key)")
                #expect(try await index.query(want.queries, k: 5) == want.laterHits, "\(key)")
            }
            let now = try await cluster.directory.all()
            #expect(now.count == 9)
            #expect(now.allSatisfy { $0.node != victimID && ids.contains($0.node) })
        }
    }

    @Test(
        "SIGTERM: the node snapshots what it hosts, leaves, turns Dead, exits 0; its actors answer from the other node")
    func gracefulSigterm() async throws {
        try await ProcessCluster.run { cluster in
            let ids = try await cluster.startNodes(2)
            let client = try await cluster.client()
            let dim = ProcessCluster.dim
            var random = SplitMix64(seed: 44)
            let leaving = cluster.processes[1]
            let leavingID = try #require(leaving.readyID)
            let stayingID = try #require(ids.first { $0 != leavingID })
            // Indexes until the leaving node hosts at least three (placement spreads keys over both nodes; 40 keys
            // that all land on one of two equal nodes would be a placement bug).
            var rows: [String: [Int]] = [:]
            var hosted: [String] = []
            for t in 0..<40 where hosted.count < 3 || rows.count < 6 {
                let key = "g\(t)"
                let index = try client.system.actor(VectorIndexActor.self, key: key)
                _ = try await index.upsert(ids: [t, t + 100], vectors: random.floats(2 * dim, -1, 1))
                rows[key] = [t, t + 100]
                hosted = try await cluster.directory.all().filter { $0.node == leavingID }.map(\.id.key)
            }
            #expect(hosted.count >= 3, "the leaving node hosts \(hosted) of \(rows.count) indexes")
            #expect(
                await eventually(timeout: .seconds(10)) {
                    leaving.metric("gpubridge_cluster_activations", folder: cluster.folder) == Double(hosted.count)
                })
            leaving.sigterm()
            #expect(await leaving.waitExit() == 0)
            #expect(leaving.output.contains(#""event":"stopped","error":false"#))
            #expect(try await cluster.membership.readAll().entry(of: leavingID)?.entry.status == .dead)
            #expect(try await cluster.directory.all().allSatisfy { $0.node != leavingID })
            // No checkpoint was asked for: the rows survive because the shutdown saved every snapshot. The indexes the
            // leaving node hosted answer from the other node, with their rows.
            for (key, want) in rows {
                let index = try client.system.actor(VectorIndexActor.self, key: key)
                #expect(try await index.idsInRowOrder() == want, "\(key)")
            }
            let placed = try await cluster.directory.all()
            for key in hosted {
                let entry = placed.first { $0.id == GPUActorID(type: "vector-index", key: key) }
                #expect(entry?.node == stayingID, "\(key)")
            }
        }
    }

    @Test("a process without the cluster's certificate can neither call an actor nor join")
    func refusedWithoutCertificate() async throws {
        try await ProcessCluster.run { cluster in
            _ = try await cluster.startNodes(2)
            let member = try await cluster.client()
            #expect(try await member.system.actor(EchoActor.self, key: "door").echo([7]) == [7])

            for (label, security) in [
                ("another CA's certificate", cluster.certificates.rogue), ("plaintext", ClusterSecurity.plaintext),
            ] {
                let outsider = try await cluster.client(security: security)
                do {
                    _ = try await outsider.system.actor(EchoActor.self, key: "door").echo([8])
                    Issue.record("\(label): the call succeeded")
                } catch let error as ClusterError {
                    guard case .nodeUnreachable = error else { Issue.record("\(label): \(error)"); continue }
                }
            }
            #expect(try await member.system.actor(EchoActor.self, key: "door").callCount() == 1)

            // A node with another CA's certificate can write its row (the database is a separate trust), but no member
            // can reach it to admit it: the row never turns Active (nothing is placed there); after two leases the
            // node writes itself Dead and exits 1 without a ready line.
            let rogue = try cluster.startNode(security: cluster.certificates.rogue)
            #expect(await rogue.waitExit(timeout: .seconds(30)) == 1)
            #expect(!rogue.output.contains(#""event":"ready""#))
            #expect(rogue.errors.contains("not admitted"), "\(rogue.errors.suffix(2000))")
            let rows = try await cluster.membership.readAll().entries.filter {
                $0.entry.labels["pid"] == "\(rogue.pid)"
            }
            #expect(rows.map(\.entry.status) == [.dead])

            // A node run with the cluster's client certificate (client usage only): peers refuse it as a TLS server,
            // so it is not admitted either, though the same certificate calls actors (above).
            let impostor = try cluster.startNode(security: cluster.certificates.client)
            #expect(await impostor.waitExit(timeout: .seconds(30)) == 1)
            #expect(!impostor.output.contains(#""event":"ready""#))
            #expect(impostor.errors.contains("not admitted"), "\(impostor.errors.suffix(2000))")
            #expect(try await cluster.directory.all().allSatisfy { !rows.map(\.entry.node).contains($0.node) })
            #expect(rogue.output.contains(#""event":"stopped","error":true"#))
        }
    }
}

/// One call of the kill -9 test: when it started and ended, and how it ended.
struct CallRecord: Sendable {
    var started: ContinuousClock.Instant
    var ended: ContinuousClock.Instant
    var outcome: String
}

/// The calls of the kill -9 test, from all its workers.
final class CallLog: Sendable {
    private let records = Mutex<[CallRecord]>([])
    private let killedAt = Mutex<ContinuousClock.Instant?>(nil)
    /// When the kill signal had been sent (nil before).
    var killed: ContinuousClock.Instant? {
        get { killedAt.withLock { $0 } }
        set { killedAt.withLock { $0 = newValue } }
    }
    func record(_ r: CallRecord) { records.withLock { $0.append(r) } }
    var count: Int { records.withLock { $0.count } }
    var all: [CallRecord] { records.withLock { $0 } }
}

extension ProcessClusterTests {
    /// The case of `error`, without its details.
    static func kind(of error: ClusterError) -> String {
        switch error {
        case .nodeUnreachable: return "nodeUnreachable"
        case .deadlineExceeded: return "deadlineExceeded"
        case .notHere: return "notHere"
        case .noActiveNodes: return "noActiveNodes"
        case .nodeNotRunning: return "nodeNotRunning"
        case .malformedMessage: return "malformedMessage"
        case .messageTooLarge: return "messageTooLarge"
        case .leaseExpired: return "leaseExpired"
        case .databaseTimeout: return "databaseTimeout"
        }
    }
}

@Suite("gpubridge demo")
struct DemoCommandTests {
    /// Runs the built gpubridge with `arguments`; returns its exit status, standard output and standard error.
    static func gpubridge(_ arguments: [String]) throws -> (status: Int32, output: Data, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(CLIBinary.path))
        process.arguments = arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, data, errorText)
    }

    @Test(
        "node --max-call-bytes outside 1...1 TiB is a usage error naming the flag, the value and the range",
        .enabled(if: CLIBinary.path != nil, "the gpubridge executable was not built beside the tests"))
    func nodeMaxCallBytes() throws {
        for value in ["0", "-1", "\((1 << 40) + 1)"] {
            let outcome = try Self.gpubridge(["node", "--plaintext", "--max-call-bytes=\(value)"])
            #expect(outcome.status == 64, "\(value): exit \(outcome.status)")
            #expect(
                outcome.errors.contains("invalid --max-call-bytes \(value); expected 1...\(1 << 40)"),
                "\(outcome.errors)")
        }
    }

    @Test(
        "run --json: \"verified\" is the result of the check, and absent when nothing was checked",
        .enabled(if: CLIBinary.path != nil, "the gpubridge executable was not built beside the tests"))
    func runVerifiedField() throws {
        for type in ["float32", "int32", "float64"] {
            let common = ["run", "vector-add", "--backend", "cpu", "--size", "5000", "--type", type, "--json"]
            let checked = try Self.gpubridge(common + ["--verify"])
            #expect(checked.status == 0, "\(checked.errors.suffix(2000))")
            let json = try #require(try JSONSerialization.jsonObject(with: checked.output) as? [String: Any])
            #expect(json["verified"] as? Bool == true)
            #expect(json["mismatches"] as? Int == 0)
            let phases = try #require(json["phasesMilliseconds"] as? [String: Double])
            #expect(phases["verify"] != nil)
            let unchecked = try Self.gpubridge(common)
            #expect(unchecked.status == 0, "\(unchecked.errors.suffix(2000))")
            let plain = try #require(try JSONSerialization.jsonObject(with: unchecked.output) as? [String: Any])
            #expect(plain["verified"] == nil, "claimed \(String(describing: plain["verified"])) without --verify")
            #expect(plain["mismatches"] == nil)
            #expect((plain["phasesMilliseconds"] as? [String: Double])?["verify"] == nil)
        }
        // The catalog operations report their check the same way.
        let saxpy = try Self.gpubridge(["run", "saxpy", "--backend", "cpu", "--size", "5000", "--verify", "--json"])
        #expect(saxpy.status == 0, "\(saxpy.errors.suffix(2000))")
        #expect((try JSONSerialization.jsonObject(with: saxpy.output) as? [String: Any])?["verified"] as? Bool == true)
    }

    // Runs the built gpubridge executable (swift build --build-tests builds it next to the tests).
    @Test(
        "the demo's cluster part places indexes on three nodes, survives a node's death and reports it in JSON",
        .enabled(if: CLIBinary.path != nil, "the gpubridge executable was not built beside the tests"))
    func demoJSON() throws {
        let (status, data, errorText) = try Self.gpubridge(
            ["demo", "--size", "4096", "--vectors", "200", "--dim", "16", "--json"])
        #expect(status == 0, "\(errorText.suffix(2000))")
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        // Every part checked its results, and said so.
        #expect(json["vectorAddVerified"] as? Bool == true)
        #expect(json["viewsVerified"] as? Bool == true)
        let actors = try #require(json["actors"] as? [String: Any])
        #expect(actors["identicalAnswersAfterReactivation"] as? Bool == true)
        #expect(actors["vectorAddVerified"] as? Bool == true)
        let cluster = try #require(json["cluster"] as? [String: Any])
        #expect(cluster["nodes"] as? Int == 3)
        #expect(cluster["indexes"] as? Int == 12)
        #expect(cluster["answersEqualSingleProcess"] as? Bool == true)
        #expect(cluster["reactivatedFromSnapshot"] as? Bool == true)
        let placement = try #require(cluster["placement"] as? [String: Int])
        #expect(placement.values.reduce(0, +) == 12)
        let killed = try #require((cluster["killedNode"] as? String)?.split(separator: "@").first.map(String.init))
        #expect(cluster["indexesOnKilledNode"] as? Int == placement[killed] ?? 0)
    }
}

/// `gpubridge_cluster_calls_served_total` as a node's `/metrics` on `port` shows it.
private func servedCalls(port: Int) throws -> Double? {
    let text = try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/metrics").body
    let name = "gpubridge_cluster_calls_served_total "
    return text.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { Double($0.dropFirst(name.count)) }
}
