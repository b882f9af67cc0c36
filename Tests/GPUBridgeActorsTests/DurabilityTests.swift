import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeActorsTestSupport
import Testing

extension IndexModel {
    var export: VectorIndexExport { VectorIndexExport(ids: ids, vectors: rows) }
}

func durableSystem(
    _ storage: any ActorStorage, checkpointEntries: Int = 10_000, chunkBytes: Int = 8 << 20,
    serialize: Bool = false, dim: Int = 4
) throws -> EmbeddedActorSystem {
    var options = ActorSystemOptions()
    options.idleTimeout = .seconds(600)
    options.serializeLocalCalls = serialize
    options.durability.checkpointEntries = checkpointEntries
    options.durability.snapshotChunkBytes = chunkBytes
    let system = try EmbeddedActorSystem(bridge: try makeBridge([CPUBackend()]), storage: storage, options: options)
    try system.register(VectorIndexActor.self, as: "index") {
        VectorIndexActor(actorSystem: $0, dim: dim, initialCapacity: 2)
    }
    return system
}

@Suite("Durable actor state")
struct DurabilityTests {
    @Test("storage contract: in memory")
    func contractInMemory() async throws {
        try await checkStorageContract(InMemoryActorStorage())
    }

    @Test("storage contract: SQLite")
    func contractSQLite() async throws {
        let (path, cleanup) = temporaryDatabase()
        defer { cleanup() }
        try await checkStorageContract(try SQLiteActorStorage(path: path))
    }

    @Test("an acknowledged upsert survives a crash: a new process on the same SQLite file has every row, exactly")
    func survivesCrash() async throws {
        let (path, cleanup) = temporaryDatabase()
        defer { cleanup() }
        var model = IndexModel(dim: 4)
        var random = SplitMix64(seed: 5)
        let crashed = try durableSystem(try SQLiteActorStorage(path: path))
        let zombie = try crashed.actor(VectorIndexActor.self, key: "k")
        for batch in 0..<20 {
            let ids = Array(batch * 10..<batch * 10 + 10)
            let rows = random.floats(10 * 4, -1, 1)
            try await zombie.upsert(ids: ids, vectors: rows)
            model.upsert(ids, rows)
        }
        // No deactivation, no checkpoint: the first system is simply abandoned, as a killed process would be.
        let survivor = try durableSystem(try SQLiteActorStorage(path: path))
        let index = try survivor.actor(VectorIndexActor.self, key: "k")
        #expect(try await index.vectorCount() == 200)
        #expect(try await index.export() == model.export)
        #expect(try await index.journalStatistics().replayedEntries == 20)

        // The abandoned activation is fenced: it cannot write behind the new one, and says why.
        await #expect(
            throws: ActorStorageError.fenced(actor: "index/k", operation: "journal append", epoch: 1, current: 2)
        ) {
            try await zombie.upsert(ids: [999], vectors: [1, 2, 3, 4])
        }
        #expect(try await index.vectorCount() == 200)
        let third = try durableSystem(try SQLiteActorStorage(path: path))
        #expect(try await third.actor(VectorIndexActor.self, key: "k").export() == model.export)
    }

    @Test(
        "journal replay equals the live state for random upserts and deletes, across checkpoints, deactivations and crashes"
    )
    func replayMatchesModel() async throws {
        let (path, cleanup) = temporaryDatabase()
        defer { cleanup() }
        var random = SplitMix64(seed: 2026)
        var model = IndexModel(dim: 8)
        // Tiny limits: a background checkpoint every 5 entries, snapshots of several 4 KiB chunks.
        var system = try durableSystem(
            try SQLiteActorStorage(path: path), checkpointEntries: 5, chunkBytes: 4096, dim: 8)
        var index = try system.actor(VectorIndexActor.self, key: "p")
        var crashes = 0, deactivations = 0, checkpoints = 0
        for step in 0..<240 {
            switch random.next() % 20 {
            case 0:
                try await index.checkpoint()
                checkpoints += 1
            case 1:
                try await system.deactivate(index.id)
                deactivations += 1
            case 2:
                system = try durableSystem(
                    try SQLiteActorStorage(path: path), checkpointEntries: 5, chunkBytes: 4096, dim: 8)
                index = try system.actor(VectorIndexActor.self, key: "p")
                crashes += 1
            case 3..<8:
                let ids = (0..<Int(random.next() % 4) + 1).map { _ in Int(random.next() % 200) }
                let removed = try await index.delete(ids: ids)
                let before = model.ids.count
                model.delete(ids)
                #expect(removed == before - model.ids.count, "step \(step)")
            default:
                let ids = (0..<Int(random.next() % 40) + 1).map { _ in Int(random.next() % 200) }
                let rows = random.floats(ids.count * 8, -1, 1)
                let count = try await index.upsert(ids: ids, vectors: rows)
                model.upsert(ids, rows)
                #expect(count == model.ids.count, "step \(step)")
            }
            if step % 20 == 19 {
                #expect(try await index.export() == model.export, "step \(step)")
            }
        }
        #expect(try await index.export() == model.export)
        #expect(
            crashes > 3 && deactivations > 3 && checkpoints > 3,
            "crashes \(crashes), deactivations \(deactivations), checkpoints \(checkpoints)")
        // The background checkpoints kept the journal short.
        let status = try await SQLiteActorStorage(path: path).status(of: index.id)
        #expect(status.journalEntries < 40, "journal entries after the last snapshot: \(status.journalEntries)")
        #expect(try await index.journalStatistics().snapshots + checkpoints > 0)
    }

    @Test("concurrent mutations waiting together are committed in one append (group commit)")
    func groupCommit() async throws {
        let storage = FaultInjectingActorStorage(InMemoryActorStorage())
        let system = try durableSystem(storage)
        let index = try system.actor(VectorIndexActor.self, key: "g")
        _ = try await index.vectorCount()  // activated
        storage.holdAppends()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await index.upsert(ids: [0], vectors: [0, 0, 0, 1]) }
            #expect(await eventually { storage.heldAppends == 1 })
            for i in 1...30 {
                group.addTask { _ = try await index.upsert(ids: [i], vectors: [Float(i), 0, 0, 1]) }
            }
            #expect(try await eventually { try await index.journalStatistics().waitingMutations == 30 })
            storage.releaseAppends()
            try await group.waitForAll()
        }
        let stats = try await index.journalStatistics()
        #expect(stats.appends == 2)
        #expect(stats.entriesAppended == 31)
        #expect(stats.largestAppend == 30)
        #expect(try await index.vectorCount() == 31)
    }

    @Test("an append that fails fails the call and applies nothing; the next call works")
    func failedAppend() async throws {
        let storage = FaultInjectingActorStorage(InMemoryActorStorage())
        let system = try durableSystem(storage)
        let index = try system.actor(VectorIndexActor.self, key: "f")
        try await index.upsert(ids: [1, 2], vectors: [1, 0, 0, 0, 0, 1, 0, 0])
        storage.inject { $0.failAppends = 1 }
        await #expect(
            throws: GPUBridgeError.io(
                path: "fault-injecting storage", operation: "journal append", errno: 5,
                message: "injected I/O error")
        ) {
            try await index.upsert(ids: [3], vectors: [0, 0, 1, 0])
        }
        // The activation is discarded and reloaded from storage; the failed row was never acknowledged nor applied.
        #expect(await eventually { (try? await index.upsert(ids: [4], vectors: [0, 0, 0, 1])) != nil })
        let export = try await index.export()
        #expect(export.ids == [1, 2, 4])
        #expect(try await storage.status(of: index.id).lastSequence == 2)
    }

    @Test("a retried call (same call id) is applied once, also after a deactivation and after a crash")
    func exactlyOnce() async throws {
        let storage = InMemoryActorStorage()
        var system = try durableSystem(storage, serialize: true)
        var index = try system.actor(VectorIndexActor.self, key: "r")
        func call(_ key: String, _ id: Int) async throws -> Int {
            try await ActorCallContext.$idempotencyKey.withValue(key) {
                try await index.upsert(ids: [id], vectors: [Float(id), 1, 0, 0])
            }
        }
        #expect(try await call("call-1", 1) == 1)
        #expect(try await call("call-1", 1) == 1)
        #expect(try await call("call-2", 2) == 2)
        // The retry of call-1 carries the same rows; a retry that (wrongly) carried others is still not applied.
        #expect(try await call("call-1", 7) == 2)
        var stats = try await index.journalStatistics()
        #expect(stats.entriesAppended == 2)
        #expect(stats.duplicateCalls == 2)
        // Without a key every call is new.
        try await index.upsert(ids: [3], vectors: [3, 1, 0, 0])
        try await index.upsert(ids: [3], vectors: [3, 1, 0, 0])
        #expect(try await index.journalStatistics().entriesAppended == 4)

        // After a deactivation the snapshot remembers the ids; after a crash the journal replay does.
        try await system.deactivate(index.id)
        #expect(try await call("call-2", 2) == 3)
        system = try durableSystem(storage, serialize: true)
        index = try system.actor(VectorIndexActor.self, key: "r")
        #expect(try await call("call-1", 1) == 3)
        try await index.upsert(ids: [5], vectors: [5, 1, 0, 0])  // journaled after the snapshot
        system = try durableSystem(storage, serialize: true)
        index = try system.actor(VectorIndexActor.self, key: "r")
        stats = try await index.journalStatistics()
        #expect(try await call("call-2", 2) == 4)
        #expect(try await index.export().ids == [1, 2, 3, 5])
        #expect(try await index.journalStatistics().duplicateCalls == stats.duplicateCalls + 1)
    }

    @Test("a failed final snapshot still releases the state, and nothing acknowledged is lost")
    func failedFinalSnapshot() async throws {
        let storage = FaultInjectingActorStorage(InMemoryActorStorage())
        let system = try durableSystem(storage)
        let index = try system.actor(VectorIndexActor.self, key: "s")
        try await index.upsert(ids: [1, 2, 3], vectors: (0..<12).map(Float.init))
        storage.inject { $0.failCommits = 1 }
        try await system.deactivate(index.id)
        #expect(system.placement(of: index.id) == nil)
        #expect(try await storage.status(of: index.id).snapshot == nil)
        #expect(try await index.export() == VectorIndexExport(ids: [1, 2, 3], vectors: (0..<12).map(Float.init)))
    }

    @Test(
        "a crash after a snapshot's chunks were written but before its commit loses nothing and applies nothing twice")
    func crashBeforeSnapshotCommit() async throws {
        let (path, cleanup) = temporaryDatabase()
        defer { cleanup() }
        let inner = try SQLiteActorStorage(path: path)
        let storage = FaultInjectingActorStorage(inner)
        let system = try durableSystem(storage, chunkBytes: 4096)
        let index = try system.actor(VectorIndexActor.self, key: "t")
        var model = IndexModel(dim: 4)
        var random = SplitMix64(seed: 77)
        for i in 0..<10 {
            let ids = [i, i + 100]
            let rows = random.floats(8, -1, 1)
            try await index.upsert(ids: ids, vectors: rows)
            model.upsert(ids, rows)
        }
        try await index.checkpoint()  // a committed snapshot at sequence 10
        try await index.delete(ids: [3, 104])
        model.delete([3, 104])
        storage.inject { $0.failCommits = 1 }
        await #expect(throws: GPUBridgeError.self) { try await index.checkpoint() }  // chunks written, commit failed
        let status = try await inner.status(of: index.id)
        #expect(status.snapshot?.id.sequence == 10)
        #expect(status.journalEntries == 1)
        // The process dies here; a new one restores the old snapshot and replays the delete once.
        let other = try durableSystem(try SQLiteActorStorage(path: path), chunkBytes: 4096)
        #expect(try await other.actor(VectorIndexActor.self, key: "t").export() == model.export)
    }

    @Test(
        "without a journal: nothing is appended, a crash keeps only the last snapshot, a failed final snapshot keeps the state"
    )
    func withoutJournal() async throws {
        let storage = FaultInjectingActorStorage(InMemoryActorStorage())
        var options = ActorSystemOptions()
        options.durability.journal = false
        func open() throws -> EmbeddedActorSystem {
            let system = try EmbeddedActorSystem(
                bridge: try makeBridge([CPUBackend()]), storage: storage, options: options)
            try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 4) }
            return system
        }
        let system = try open()
        let index = try system.actor(VectorIndexActor.self, key: "v")
        try await index.upsert(ids: [1], vectors: [1, 0, 0, 0])
        try await index.checkpoint()
        try await index.upsert(ids: [2], vectors: [0, 1, 0, 0])
        #expect(try await storage.status(of: index.id).journalEntries == 0)
        #expect(try await index.journalStatistics().appends == 0)
        // The final snapshot fails: the activation stays (it is the only copy of row 2).
        storage.inject { $0.failCommits = 1 }
        await #expect(throws: GPUBridgeError.self) { try await system.deactivate(index.id) }
        #expect(system.placement(of: index.id) != nil)
        #expect(try await index.export().ids == [1, 2])
        // A crash now keeps what the last snapshot had.
        #expect(try await open().actor(VectorIndexActor.self, key: "v").export().ids == [1])
    }

    @Test("snapshots stream in chunks: a multi-chunk snapshot restores exactly")
    func chunkedSnapshot() async throws {
        let storage = InMemoryActorStorage()
        let system = try durableSystem(storage, chunkBytes: 4096, dim: 64)
        let index = try system.actor(VectorIndexActor.self, key: "c")
        var random = SplitMix64(seed: 9)
        let rows = random.floats(300 * 64, -1, 1)
        try await index.upsert(ids: Array(0..<300), vectors: rows)
        try await index.checkpoint()
        let status = try await storage.status(of: index.id)
        let head = try #require(status.snapshot)
        let expectedBytes: Int64 = 20 + 300 * 8 + 300 * 64 * 4
        #expect(head.bytes == expectedBytes)
        #expect(head.chunks == Int((head.bytes + 4095) / 4096))
        #expect(status.journalEntries == 0)
        let other = try durableSystem(storage, chunkBytes: 4096, dim: 64)
        #expect(
            try await other.actor(VectorIndexActor.self, key: "c").export()
                == VectorIndexExport(ids: Array(0..<300), vectors: rows))
    }
}
