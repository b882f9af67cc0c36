import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import GPUBridgeTestSupport
import Testing

/// Real `gpubridge node` processes on loopback: gRPC with mutual TLS between them, membership, directory and actor
/// state in the test PostgreSQL server (scripts/test starts one). Each test makes its own cluster name.
@Suite("Cluster of node processes over gRPC, mutual TLS and PostgreSQL",
       .serialized,
       // Needs a PostgreSQL server (scripts/test starts one and sets GPUBRIDGE_TEST_DATABASE_URL) and the built
       // gpubridge executable next to the test bundle (or GPUBRIDGE_BIN).
       .enabled(if: ProcessClusterEnvironment.available,
                "needs GPUBRIDGE_TEST_DATABASE_URL (scripts/test starts a server) and the built gpubridge executable"))
struct ProcessClusterTests {
    @Test("three node processes: vector indexes spread over them answer exactly as in a single process")
    func threeNodes() async throws {
        try await ProcessCluster.run { cluster in
            let ids = try await cluster.startNodes(3)
            let client = try await cluster.client()
            let reference = try InProcessCluster.cpuSystem(storage: InMemoryActorStorage(), register: ProcessCluster.registerActors)
            let dim = ProcessCluster.dim
            var random = SplitMix64(seed: 21)
            for t in 0 ..< 24 {
                let rows = random.floats(50 * dim, -1, 1)
                let keys = Array(t * 1000 ..< t * 1000 + 50)
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
            let served = { cluster.processes.map { $0.metric("gpubridge_cluster_calls_served_total", folder: cluster.folder) ?? 0 } }
            #expect(await eventually(timeout: .seconds(10)) { served().reduce(0, +) == 96 }, "served per node: \(served())")
            for (process, id) in zip(cluster.processes, ids) {
                let hosted = Double(placed[id]?.count ?? 0)
                #expect(await eventually(timeout: .seconds(10)) {
                    process.metric("gpubridge_cluster_activations", folder: cluster.folder) == hosted
                }, "\(process.name)")
            }
        }
    }

    @Test("concurrent first calls from several clients to one key create exactly one activation")
    func oneActivationAcrossProcesses() async throws {
        try await ProcessCluster.run { cluster in
            _ = try await cluster.startNodes(3)
            var clients: [ClusterNode] = []
            for _ in 0 ..< 3 { clients.append(try await cluster.client()) }
            for round in 0 ..< 4 {
                let key = "hot-\(round)"
                let total = try await withThrowingTaskGroup(of: Int.self) { group in
                    for i in 0 ..< 45 {
                        let system = clients[i % clients.count].system
                        group.addTask { try await system.actor(EchoActor.self, key: key).echo([UInt8(i)]).first.map(Int.init) ?? -1 }
                    }
                    return try await group.reduce(0, +)
                }
                #expect(total == (0 ..< 45).reduce(0, +))
                let entries = try await cluster.directory.all().filter { $0.id == GPUActorID(type: "echo", key: key) }
                #expect(entries.count == 1)
                // Every one of the 45 calls reached the same activation.
                #expect(try await clients[0].system.actor(EchoActor.self, key: key).callCount() == 45)
            }
        }
    }

    @Test("gpubridge call: client processes racing to one key make one activation; an index's rows cross processes")
    func callProcesses() async throws {
        try await ProcessCluster.run { cluster in
            let ids = try await cluster.startNodes(2)
            let racing = try await cluster.call((0 ..< 4).map { ["echo", "race", "echo", "--text", "from-\($0)"] })
            for (i, outcome) in racing.enumerated() {
                #expect(outcome.status == 0, "\(outcome.output)")
                #expect(outcome.output.contains(#""result":"from-\#(i)""#), "\(outcome.output)")
            }
            let nodes = Set(racing.compactMap { outcome -> String? in
                guard let range = outcome.output.range(of: #""node":""#) else { return nil }
                return String(outcome.output[range.upperBound...].prefix { $0 != "\"" })
            })
            #expect(nodes.count == 1, "the racing calls named \(nodes)")
            #expect(try await cluster.directory.all().filter { $0.id == GPUActorID(type: "echo", key: "race") }.count == 1)
            let count = try await cluster.call([["echo", "race", "count"]])
            #expect(count.first?.output.contains(#""result":4"#) == true, "\(count)")

            // One process writes rows, another queries them: the index lives on its node, not in the callers.
            let upsert = try await cluster.call([["vector-index", "shared", "upsert-random", "--rows", "200", "--seed", "5"]])
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

    @Test("kill -9 of a node: calls fail clearly or are retried, its row turns Dead, its actors come back elsewhere from their snapshot")
    func killNine() async throws {
        try await ProcessCluster.run { cluster in
            let ids = try await cluster.startNodes(3)
            let client = try await cluster.client()
            // A client that retries calls to an unreachable node until the actor is reachable again (idempotent reads).
            let patient = try await cluster.client { $0.retryUnreachableFor = .seconds(30) }
            let dim = ProcessCluster.dim
            var random = SplitMix64(seed: 33)
            // Per index: the count and answers at the checkpoint, and after one more row (kept only where the node lives).
            var expected: [String: (count: Int, queries: [Float], hits: [[VectorHit]], laterHits: [[VectorHit]])] = [:]
            for t in 0 ..< 9 {
                let key = "index-\(t)"
                let index = try client.system.actor(VectorIndexActor.self, key: key)
                _ = try await index.upsert(ids: Array(0 ..< 20 + t), vectors: random.floats((20 + t) * dim, -1, 1))
                try await index.checkpoint()
                let queries = random.floats(2 * dim, -1, 1)
                let hits = try await index.query(queries, k: 5)
                // Written after the snapshot: lost if the node dies (what "last snapshot" means).
                _ = try await index.upsert(ids: [9_999], vectors: queries.prefix(dim).map { $0 * 2 })
                expected[key] = (20 + t, queries, hits, try await index.query(queries, k: 5))
                #expect(expected[key]!.laterHits != hits)
            }
            let placed = Dictionary(grouping: try await cluster.directory.all(), by: \.node)
            let victimID = try #require(placed.max { $0.value.count < $1.value.count }?.key)
            let victim = try #require(cluster.processes.first { $0.readyID == victimID })
            let onVictim = try #require(placed[victimID]).map(\.id.key)

            // Calls in flight while the node dies: each one returns or throws a ClusterError; none is lost.
            let flight = Task {
                try await withThrowingTaskGroup(of: String.self) { group in
                    for i in 0 ..< 60 {
                        let key = onVictim[i % onVictim.count]
                        let system = client.system
                        group.addTask {
                            do {
                                _ = try await system.actor(VectorIndexActor.self, key: key).vectorCount()
                                return "ok"
                            } catch let error as ClusterError {
                                return "\(error)"
                            } catch {
                                return "other: \(error)"
                            }
                        }
                    }
                    return try await group.reduce(into: [String]()) { $0.append($1) }
                }
            }
            try await Task.sleep(for: .milliseconds(5))
            victim.kill9()
            // The patient client calls at once, before the death is declared: it retries until the index is back.
            let first = try #require(onVictim.first)
            let patientCall = Task { try await patient.system.actor(VectorIndexActor.self, key: first).vectorCount() }
            let outcomes = try await flight.value
            #expect(outcomes.count == 60)
            #expect(outcomes.allSatisfy { !$0.hasPrefix("other:") }, "\(outcomes)")
            print("kill -9: of 60 calls in flight, \(outcomes.filter { $0 == "ok" }.count) returned, "
                  + "\(outcomes.filter { $0.contains("unreachable") }.count) failed with nodeUnreachable, "
                  + "\(outcomes.filter { $0 != "ok" && !$0.contains("unreachable") }.count) with another ClusterError")
            #expect(await victim.waitExit() == SIGKILL)
            #expect(victim.process.terminationReason == .uncaughtSignal)

            // The survivors vote it dead.
            #expect(await eventually(timeout: .seconds(30)) {
                (try? await cluster.membership.readAll().entry(of: victimID)?.entry.status) == .dead
            })
            let row = try #require(try await cluster.membership.readAll().entry(of: victimID)?.entry)
            #expect(row.suspicions.count >= 2, "votes: \(row.suspicions)")

            #expect(try await patientCall.value == expected[first]!.count)
            // The client learns of the death at its next membership round (until then a location it cached before the
            // kill still names the victim: docs/CLUSTER.md, calls during a death).
            #expect(await eventually(timeout: .seconds(10)) { client.view.entry(of: victimID)?.entry.status == .dead })
            // The victim's indexes answer from a survivor with the rows of their last snapshot; the others lost nothing.
            for (key, want) in expected {
                let index = try client.system.actor(VectorIndexActor.self, key: key)
                let died = onVictim.contains(key)
                #expect(try await index.vectorCount() == want.count + (died ? 0 : 1), "\(key)")
                #expect(try await index.query(want.queries, k: 5) == (died ? want.hits : want.laterHits), "\(key)")
            }
            let now = try await cluster.directory.all()
            #expect(now.count == 9)
            #expect(now.allSatisfy { $0.node != victimID && ids.contains($0.node) })
        }
    }

    @Test("SIGTERM: the node snapshots its actors, leaves the directory, turns Dead and exits 0")
    func gracefulSigterm() async throws {
        try await ProcessCluster.run { cluster in
            let ids = try await cluster.startNodes(2)
            let client = try await cluster.client()
            let dim = ProcessCluster.dim
            var random = SplitMix64(seed: 44)
            for t in 0 ..< 6 {
                _ = try await client.system.actor(VectorIndexActor.self, key: "g\(t)").upsert(ids: [t, t + 100], vectors: random.floats(2 * dim, -1, 1))
            }
            let leaving = cluster.processes[1]
            let leavingID = ids[1]
            let had = try await cluster.directory.all().filter { $0.node == leavingID }.count
            leaving.sigterm()
            #expect(await leaving.waitExit() == 0)
            #expect(leaving.output.contains(#""event":"stopped","error":false"#))
            #expect(try await cluster.membership.readAll().entry(of: leavingID)?.entry.status == .dead)
            #expect(try await cluster.directory.all().allSatisfy { $0.node != leavingID })
            // No checkpoint was asked for: the rows survive because the shutdown saved every snapshot.
            for t in 0 ..< 6 {
                #expect(try await client.system.actor(VectorIndexActor.self, key: "g\(t)").idsInRowOrder() == [t, t + 100])
            }
            _ = had
        }
    }

    @Test("a process without the cluster's certificate can neither call an actor nor join")
    func refusedWithoutCertificate() async throws {
        try await ProcessCluster.run { cluster in
            _ = try await cluster.startNodes(2)
            let member = try await cluster.client()
            #expect(try await member.system.actor(EchoActor.self, key: "door").echo([7]) == [7])

            for (label, security) in [("another CA's certificate", cluster.certificates.rogue), ("plaintext", ClusterSecurity.plaintext)] {
                let outsider = try await cluster.client(security: security)
                do {
                    _ = try await outsider.system.actor(EchoActor.self, key: "door").echo([8])
                    Issue.record("\(label): the call succeeded")
                } catch let error as ClusterError {
                    guard case .nodeUnreachable = error else { Issue.record("\(label): \(error)"); continue }
                }
            }
            #expect(try await member.system.actor(EchoActor.self, key: "door").callCount() == 1)

            // A node with another CA's certificate writes its row (the database is a separate trust), but no member
            // can probe it: it is voted dead, reads that, and exits 1.
            let rogue = try cluster.startNode(security: cluster.certificates.rogue)
            let rogueID = try await rogue.waitReady()
            #expect(await eventually(timeout: .seconds(30)) {
                (try? await cluster.membership.readAll().entry(of: rogueID)?.entry.status) == .dead
            })
            #expect(await rogue.waitExit(timeout: .seconds(30)) == 1)
            #expect(rogue.output.contains(#""event":"stopped","error":true"#))
        }
    }
}

@Suite("gpubridge demo")
struct DemoCommandTests {
    // Runs the built gpubridge executable (swift build --build-tests builds it next to the tests).
    @Test("the demo's cluster part places indexes on three nodes, survives a node's death and reports it in JSON",
          .enabled(if: NodeBinary.path != nil, "the gpubridge executable was not built beside the tests"))
    func demoJSON() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(NodeBinary.path))
        process.arguments = ["demo", "--size", "4096", "--vectors", "200", "--dim", "16", "--json"]
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(errorText.suffix(2000))")
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
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
