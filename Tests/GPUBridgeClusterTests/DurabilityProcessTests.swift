import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import GPUBridgeTestSupport
import Synchronization
import Testing

/// What the streaming client of the kill test saw: each call's rows and how it ended.
final class UpsertLog: Sendable {
    struct Call: Sendable {
        var key: String
        var ids: [Int]
        var vectors: [Float]
        /// nil: acknowledged; else the error's description.
        var failure: String?
    }

    private let calls = Mutex<[Call]>([])
    private let stopped = Atomic<Bool>(false)

    func record(_ call: Call) { calls.withLock { $0.append(call) } }
    var all: [Call] { calls.withLock { $0 } }
    var acknowledged: Int { calls.withLock { $0.filter { $0.failure == nil }.count } }
    var stop: Bool {
        get { stopped.load(ordering: .acquiring) }
        set { stopped.store(newValue, ordering: .releasing) }
    }
}

extension ProcessClusterTests {
    @Test(
        "kill -9 of each node in turn while a client streams upserts: every acknowledged row is present with its exact vector, none twice"
    )
    func killEachNodeDuringUpserts() async throws {
        try await ProcessCluster.run { cluster in
            _ = try await cluster.startNodes(3)
            let client = try await cluster.client { $0.retryUnreachableFor = .seconds(30) }
            let dim = ProcessCluster.dim
            let keys = (0..<6).map { "durable-\($0)" }
            let log = UpsertLog()
            let system = client.system
            // One worker per index, calls back to back: 10 new rows per call (ids unique across the test).
            let workers = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (w, key) in keys.enumerated() {
                        group.addTask {
                            var random = SplitMix64(seed: UInt64(w + 1))
                            var n = 0
                            while !log.stop {
                                let ids = (0..<10).map { w * 1_000_000 + n * 10 + $0 }
                                let vectors = random.floats(10 * dim, -1, 1)
                                n += 1
                                do {
                                    _ = try await system.actor(VectorIndexActor.self, key: key).upsert(
                                        ids: ids, vectors: vectors)
                                    log.record(.init(key: key, ids: ids, vectors: vectors, failure: nil))
                                } catch {
                                    log.record(.init(key: key, ids: ids, vectors: vectors, failure: "\(error)"))
                                }
                            }
                        }
                    }
                }
            }
            // Each original node is killed in turn, a replacement started after each; the stream must make progress
            // before each kill and after each replacement.
            let originals = cluster.processes
            for victim in originals {
                let before = log.acknowledged
                #expect(
                    await eventually(timeout: .seconds(60)) { log.acknowledged >= before + 30 },
                    "no progress before killing \(victim.name): \(log.acknowledged - before) calls")
                victim.kill9()
                #expect(await victim.waitExit() == SIGKILL)
                _ = try await cluster.startNode().waitReady()
            }
            let last = log.acknowledged
            #expect(await eventually(timeout: .seconds(60)) { log.acknowledged >= last + 30 })
            log.stop = true
            await workers.value

            let calls = log.all
            let failed = calls.filter { $0.failure != nil }
            print(
                "durability kill test: \(calls.count) upserts, \(calls.count - failed.count) acknowledged, \(failed.count) failed: "
                    + "\(Array(Set(failed.compactMap(\.failure)).prefix(3)))")
            #expect(calls.count - failed.count >= 120)
            for key in keys {
                let export = try await system.actor(VectorIndexActor.self, key: key).export()
                #expect(Set(export.ids).count == export.ids.count, "\(key): a row is present twice")
                let present = export.byID(dim: dim)
                var known = Set<Int>()
                for call in calls where call.key == key {
                    known.formUnion(call.ids)
                    let found = call.ids.filter { present[$0] != nil }
                    let exact = call.ids.enumerated().allSatisfy { i, id in
                        present[id] == nil || present[id]! == Array(call.vectors[i * dim..<(i + 1) * dim])
                    }
                    #expect(exact, "\(key): a row of call \(call.ids[0] / 10) has another vector")
                    if call.failure == nil {
                        #expect(
                            found.count == call.ids.count,
                            "\(key): acknowledged rows \(call.ids[0]) lost: \(call.ids.count - found.count)")
                    } else {
                        // A call that failed is either wholly present (its append committed) or wholly absent.
                        #expect(found.isEmpty || found.count == call.ids.count, "\(key): failed call partly applied")
                    }
                }
                #expect(Set(present.keys).isSubset(of: known), "\(key): rows no call wrote")
            }
        }
    }

    @Test(
        "20 acknowledged `gpubridge call ... upsert-random` processes, kill -9 of the serving node: nothing lost; a retried --call-id applies once"
    )
    func cliUpsertsSurviveKill() async throws {
        try await ProcessCluster.run { cluster in
            _ = try await cluster.startNodes(2)
            for i in 0..<20 {
                let result = try await cluster.call([
                    [
                        "vector-index", "cli", "upsert-random", "--rows", "10",
                        "--first-id", "\(i * 10)", "--seed", "\(i + 1)", "--call-id", "upsert-\(i)",
                    ]
                ])
                #expect(result[0].status == 0, "call \(i): \(result[0].output.suffix(500))")
                #expect(
                    result[0].output.contains(#""result":\#((i + 1) * 10)}"#),
                    "call \(i): \(result[0].output.suffix(300))")
            }
            // The same call id again (a client that lost the reply and retries): applied once.
            let retry = try await cluster.call([
                [
                    "vector-index", "cli", "upsert-random", "--rows", "10", "--first-id", "5000",
                    "--seed", "99", "--call-id", "upsert-19",
                ]
            ])
            #expect(
                retry[0].status == 0 && retry[0].output.contains(#""result":200}"#), "\(retry[0].output.suffix(300))")
            let address = try #require(try await cluster.directory.lookup(GPUActorID(type: "vector-index", key: "cli")))
            let serving = try #require(cluster.processes.first { $0.readyID == address.node })
            serving.kill9()
            #expect(await serving.waitExit() == SIGKILL)
            #expect(
                await eventually(timeout: .seconds(30)) {
                    (try? await cluster.membership.readAll().entry(of: address.node)?.entry.status) == .dead
                })
            let count = try await cluster.call([["vector-index", "cli", "count"]])
            #expect(
                count[0].status == 0 && count[0].output.contains(#""result":200}"#), "\(count[0].output.suffix(500))")
            // Every row with the vector its call wrote (seeded), read through an in-process client.
            let client = try await cluster.client()
            let export = try await client.system.actor(VectorIndexActor.self, key: "cli").export()
            var want: [Int: [Float]] = [:]
            for i in 0..<20 {
                var random = SplitMix64(seed: UInt64(i + 1))
                let rows = random.floats(10 * ProcessCluster.dim, -1, 1)
                for r in 0..<10 {
                    want[i * 10 + r] = Array(rows[r * ProcessCluster.dim..<(r + 1) * ProcessCluster.dim])
                }
            }
            #expect(export.byID(dim: ProcessCluster.dim) == want)
        }
    }

    @Test("a zombie (SIGSTOP past its death, then SIGCONT) cannot write behind the activation that replaced it")
    func zombieCannotAppend() async throws {
        try await ProcessCluster.run { cluster in
            _ = try await cluster.startNodes(2)
            let dim = ProcessCluster.dim
            let first = try await cluster.client()
            // A client that sends once, with a long deadline: its call waits in the paused node's socket.
            let stuck = try await cluster.client { $0.callTimeout = .seconds(60) }
            let key = "zombie-index"
            _ = try await first.system.actor(VectorIndexActor.self, key: key)
                .upsert(ids: [1, 2], vectors: [Float](repeating: 0.5, count: 2 * dim))
            let address = try #require(try await cluster.directory.lookup(GPUActorID(type: "vector-index", key: key)))
            let zombie = try #require(cluster.processes.first { $0.readyID == address.node })
            _ = try await stuck.system.actor(VectorIndexActor.self, key: key).vectorCount()  // caches the location

            kill(zombie.pid, SIGSTOP)
            let late = Task {
                try await stuck.system.actor(VectorIndexActor.self, key: key).upsert(
                    ids: [666], vectors: [Float](repeating: 6, count: dim))
            }
            // Declared dead; the index comes back on the other node (a new epoch) and takes a write there. (A client
            // that had cached the paused node would wait for its deadline: a new one reads the Dead row first.)
            #expect(
                await eventually(timeout: .seconds(30)) {
                    (try? await cluster.membership.readAll().entry(of: address.node)?.entry.status) == .dead
                })
            let patient = try await cluster.client { $0.retryUnreachableFor = .seconds(30) }
            let index = try patient.system.actor(VectorIndexActor.self, key: key)
            _ = try await index.upsert(ids: [3], vectors: [Float](repeating: 3, count: dim))
            let moved = try #require(try await cluster.directory.lookup(GPUActorID(type: "vector-index", key: key)))
            #expect(moved.node != address.node)

            kill(zombie.pid, SIGCONT)
            // The paused node runs again. Its lease window passed while it was stopped, so it refuses the call it
            // holds (`notHere`: never ran) and the caller takes it to the live activation, or the call fails; it
            // never runs on the zombie. Either way a write is acknowledged exactly when it is stored, once.
            let outcome: String
            do {
                _ = try await late.value
                outcome = "acknowledged"
            } catch {
                outcome = "\(error)"
            }
            print("zombie: the call it held ended with: \(outcome)")
            #expect(
                await zombie.waitExit(timeout: .seconds(30)) != nil, "the zombie did not stop on finding itself dead")
            let ids = try await index.export().ids.sorted()
            #expect(ids.filter { $0 != 666 } == [1, 2, 3])
            #expect(ids.contains(666) == (outcome == "acknowledged"), "\(outcome); ids \(ids)")
            // It served the two calls made before the pause and nothing after (its metrics are written at exit).
            #expect(zombie.metric("gpubridge_cluster_calls_served_total", folder: cluster.folder) == 2)
            let status = try await PostgresActorStorage(store: cluster.store, cluster: cluster.name)
                .status(of: GPUActorID(type: "vector-index", key: key))
            #expect(status.epoch >= 2)
        }
    }
}
