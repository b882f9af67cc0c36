import Distributed
import GPUBridge
import GPUBridgeActors
import Testing

@Suite("Stress: 1 000 actors x 10 concurrent calls on one device")
struct StressTests {
    static let actors = 1_000
    static let callsPerActor = 10
    static let dim = 16

    /// Unit vector j: its cosine with unit vector j is 1 and with every other is 0, so the best hit is exact.
    static func unit(_ j: Int) -> [Float] {
        var v = [Float](repeating: 0, count: dim)
        v[j] = 1
        return v
    }

    @Test(
        "no deadlock, no lost or duplicated result, device memory back to baseline once every actor deactivates",
        .timeLimit(.minutes(5)))
    func thousandActors() async throws {
        var actorOptions = ActorSystemOptions()
        actorOptions.idleTimeout = .milliseconds(250)
        let bridge = try Bridge(options: options(), backends: [CPUBackend()])
        let storage = InMemoryActorStorage()
        let system = try EmbeddedActorSystem(bridge: bridge, storage: storage, options: actorOptions)
        try system.register(VectorIndexActor.self, as: "index") {
            VectorIndexActor(actorSystem: $0, dim: Self.dim, initialCapacity: 4)
        }
        let baseline = Baseline(bridge.devices[0])
        let clock = ContinuousClock()
        let start = clock.now

        // Phase 1: every actor gets 10 concurrent upserts of its own ids (id = actor * 10 + j, vector = unit j).
        // Phase 2: every actor gets 10 concurrent queries; query j must answer id actor * 10 + j with score 1.
        // All 10 000 calls of a phase are in flight at once; 4 initial rows make the matrices grow under the writes.
        let outcome = try await withDeadline(.seconds(240), "1 000 actors x 10 calls") {
            () async throws -> (wrongQueries: Int, wrongRows: Int, answered: Int) in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for a in 0..<Self.actors {
                    let index = try system.actor(VectorIndexActor.self, key: "tenant-\(a)")
                    for j in 0..<Self.callsPerActor {
                        group.addTask { _ = try await index.upsert(ids: [a * 10 + j], vectors: Self.unit(j)) }
                    }
                }
                try await group.waitForAll()
            }
            let answers = try await withThrowingTaskGroup(of: (Int, Int, [[VectorHit]]).self) { group in
                for a in 0..<Self.actors {
                    let index = try system.actor(VectorIndexActor.self, key: "tenant-\(a)")
                    for j in 0..<Self.callsPerActor {
                        group.addTask { (a, j, try await index.query(Self.unit(j), k: 1)) }
                    }
                }
                return try await group.reduce(into: [(Int, Int, [[VectorHit]])]()) { $0.append($1) }
            }
            var wrongQueries = 0
            var seen = Set<Int>()
            for (a, j, hits) in answers {
                seen.insert(a * 10 + j)
                if hits != [[VectorHit(id: a * 10 + j, score: 1)]] { wrongQueries += 1 }
            }
            var wrongRows = 0
            for a in 0..<Self.actors {
                let ids = try await system.actor(VectorIndexActor.self, key: "tenant-\(a)").idsInRowOrder()
                if ids.sorted() != Array(a * 10..<a * 10 + 10) { wrongRows += 1 }
            }
            return (wrongQueries, wrongRows, seen.count == answers.count ? answers.count : -1)
        }
        let elapsed = clock.now - start
        let result = try #require(outcome)
        #expect(result.answered == Self.actors * Self.callsPerActor, "answers (distinct): \(result.answered)")
        #expect(result.wrongQueries == 0)
        #expect(result.wrongRows == 0, "actors whose rows are not exactly their 10 ids")
        #expect(system.instanceCount(of: GPUActorID(type: "index", key: "tenant-0")) == 1)

        // Every actor goes idle and deactivates: its snapshot is saved and its device memory returns to the pool.
        let allIdle = await eventually(timeout: .seconds(60)) { system.placements.isEmpty }
        #expect(allIdle, "\(system.placements.count) actors still active")
        #expect(storage.counts.snapshotsCommitted >= Self.actors)
        await baseline.check()
        print(
            "reliability: stress: \(Self.actors) actors x \(Self.callsPerActor) calls x 2 phases = \(2 * Self.actors * Self.callsPerActor) calls in \(elapsed), 0 lost, 0 duplicated; \(storage.counts.snapshotsCommitted) snapshots saved"
        )

        // They come back with their rows from the snapshots.
        let hits = try await system.actor(VectorIndexActor.self, key: "tenant-999").query(Self.unit(9), k: 1)
        #expect(hits == [[VectorHit(id: 9_999, score: 1)]])
        _ = await system.shutdown()
        await baseline.check()
    }
}
