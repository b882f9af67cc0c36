import Distributed
import GPUBridge
import GPUBridgeActors
import Testing

/// A host model of the index: ids in row order and their vectors, kept the way the actor keeps its rows.
struct IndexModel {
    let dim: Int
    var ids: [Int] = []
    var vectors: [Int: [Float]] = [:]

    mutating func upsert(_ newIDs: [Int], _ flat: [Float]) {
        for (i, id) in newIDs.enumerated() {
            if vectors[id] == nil { ids.append(id) }
            vectors[id] = Array(flat[i * dim..<(i + 1) * dim])
        }
    }

    mutating func delete(_ gone: [Int]) {
        for id in gone {
            guard let row = ids.firstIndex(of: id) else { continue }
            ids[row] = ids[ids.count - 1]  // the last row moves into the hole
            ids.removeLast()
            vectors[id] = nil
        }
    }

    var rows: [Float] { ids.flatMap { vectors[$0]! } }
}

@Suite("Resident vector index")
struct VectorIndexTests {
    static func check(on backend: any DeviceBackend, dim: Int, countsBytes: Bool) async throws {
        let system = try makeSystem([backend])
        try system.register(VectorIndexActor.self, as: "index") {
            VectorIndexActor(actorSystem: $0, dim: dim, initialCapacity: 256)
        }
        let index = try system.actor(VectorIndexActor.self, key: "check")
        var model = IndexModel(dim: dim)
        var random = SplitMix64(seed: 42)

        // 1 000 vectors, upserted in chunks (the matrix grows past its 256-row capacity by device-to-device copies),
        // with exact duplicates so that ties happen: equal scores must go to the lower row.
        for chunk in 0..<4 {
            let ids = Array(chunk * 250..<(chunk + 1) * 250).map { $0 * 3 + 7 }
            var flat = random.floats(250 * dim, -1, 1)
            if chunk == 3 {
                for i in 0..<10 {
                    flat.replaceSubrange(i * dim..<(i + 1) * dim, with: model.vectors[model.ids[i * 20]]!)
                }
            }
            try await index.upsert(ids: ids, vectors: flat)
            model.upsert(ids, flat)
        }
        #expect(try await index.vectorCount() == 1000)
        #expect(try await index.idsInRowOrder() == model.ids)

        // Queries include stored vectors (their duplicates tie at score 1) and random ones.
        var queries = random.floats(6 * dim, -1, 1)
        queries += model.vectors[model.ids[0]]! + model.vectors[model.ids[40]]!
        let device = system.bridge.devices[0]
        let statsBefore = try await index.stats()
        let copiedBefore = device.counters.bytesCopied
        let hits = try await index.query(queries, k: 10)
        let copied = device.counters.bytesCopied - copiedBefore
        var failures = compare(hits, queries: queries, rows: model.rows, ids: model.ids, dim: dim, k: 10)
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        #expect(
            hits[6][0].id == model.ids[0] && hits[6][1].id == model.ids[750],
            "the duplicate in a later row ranks second")
        #expect(hits[6][0].score == hits[6][1].score)

        // The matrix stayed on the device: only the queries went up (and the k results came back).
        let statsAfter = try await index.stats()
        #expect(statsAfter.matrixBytesUploaded == statsBefore.matrixBytesUploaded)
        #expect(statsAfter.queryBytesUploaded - statsBefore.queryBytesUploaded == queries.count * 4)
        if countsBytes { #expect(copied == queries.count * 4 + 8 * 10 * 8, "bytes copied by one query: \(copied)") }

        // Overwrite some, delete some (the last rows move into the holes), query again.
        let overwrite = [model.ids[5], model.ids[500], 99_999]
        let fresh = random.floats(3 * dim, -1, 1)
        try await index.upsert(ids: overwrite, vectors: fresh)
        model.upsert(overwrite, fresh)
        let gone = [model.ids[0], model.ids[333], model.ids[model.ids.count - 1], 123_456_789]
        #expect(try await index.delete(ids: gone) == 3)
        model.delete(gone)
        #expect(try await index.idsInRowOrder() == model.ids)
        let again = try await index.query(queries, k: 10)
        failures = compare(again, queries: queries, rows: model.rows, ids: model.ids, dim: dim, k: 10)
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        #expect(!again.joined().contains { gone.contains($0.id) })

        // Argument errors name the argument, the value and the limit.
        await #expect(throws: GPUBridgeError.invalidArgument(name: "k", value: "1025", limit: "1...1024")) {
            try await index.query(queries, k: 1025)
        }
        await #expect(throws: GPUBridgeError.self) { try await index.query([1, 2, 3], k: 1) }
        await #expect(throws: GPUBridgeError.self) {
            try await index.upsert(ids: [1, 2], vectors: [Float](repeating: 0, count: dim))
        }
        #expect(try await index.vectorCount() == model.ids.count)
    }

    @Test("top-k on the CPU backend equals the host reference, with upserts and deletes visible to the next query")
    func cpu() async throws {
        try await Self.check(on: CPUBackend(), dim: 384, countsBytes: true)
    }

    // Needs an OpenCL platform with a device (PoCL in CI, installed by scripts/test).
    @Test(
        "top-k on OpenCL equals the host reference, with upserts and deletes visible to the next query",
        .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"))
    func openCL() async throws {
        try await Self.check(on: Machine.openCL[0], dim: 384, countsBytes: false)
    }

    @Test("an empty index answers empty lists; k larger than the index answers what there is")
    func smallIndexes() async throws {
        let system = try makeSystem([CPUBackend()])
        try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 3) }
        let index = try system.actor(VectorIndexActor.self, key: "small")
        #expect(try await index.query([1, 0, 0, 0, 1, 0], k: 3) == [[], []])
        try await index.upsert(ids: [10, 20], vectors: [1, 0, 0, 0, 1, 0])
        let hits = try await index.query([1, 0, 0], k: 5)
        #expect(hits.count == 1 && hits[0].map(\.id) == [10, 20])
        #expect(hits[0][0].score == 1 && hits[0][1].score == 0)
    }

    @Test("checkpoint and restore keep rows, ids and answers; a corrupt snapshot fails clearly")
    func snapshots() async throws {
        let storage = InMemoryActorStorage()
        let system = try makeSystem([CPUBackend()], storage: storage)
        try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 4) }
        let index = try system.actor(VectorIndexActor.self, key: "snap")
        try await index.upsert(ids: [1, 2, 3], vectors: [1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0])
        try await index.checkpoint()
        #expect(storage.counts.snapshotsCommitted == 1)
        try await index.upsert(ids: [4], vectors: [0, 0, 0, 1])
        try await system.deactivate(index.id)
        #expect(storage.counts.snapshotsCommitted == 2)
        #expect(try await index.query([1, 0, 0, 0], k: 3).map { $0.map(\.id) } == [[1, 3, 2]])

        // A snapshot that is not a vector index snapshot.
        let broken = GPUActorID(type: "index", key: "broken")
        let epoch = try await storage.claim(broken).epoch
        let bad = Array("GBVI".utf8) + [1, 0, 0, 0]
        try await storage.writeChunk(
            bad, of: broken, snapshot: SnapshotID(epoch: epoch, sequence: 0), index: 0, epoch: epoch)
        try await storage.commitSnapshot(
            SnapshotHead(
                id: SnapshotID(epoch: epoch, sequence: 0), chunks: 1, bytes: Int64(bad.count),
                recentCallIDs: []), of: broken, epoch: epoch)
        await #expect(throws: GPUBridgeError.self) {
            try await system.actor(VectorIndexActor.self, key: "broken").vectorCount()
        }
        // A header claiming more rows than any snapshot can hold is refused before any arithmetic with the count.
        let huge = GPUActorID(type: "index", key: "huge")
        let hugeEpoch = try await storage.claim(huge).epoch
        var header = Array("GBVI".utf8)
        for v in [UInt32(1), UInt32(4)] { withUnsafeBytes(of: v.littleEndian) { header += $0 } }
        withUnsafeBytes(of: Int64.max.littleEndian) { header += $0 }
        let hugeID = SnapshotID(epoch: hugeEpoch, sequence: 0)
        try await storage.writeChunk(header, of: huge, snapshot: hugeID, index: 0, epoch: hugeEpoch)
        try await storage.commitSnapshot(
            SnapshotHead(id: hugeID, chunks: 1, bytes: Int64(header.count), recentCallIDs: []), of: huge,
            epoch: hugeEpoch)
        await #expect(
            throws: GPUBridgeError.invalidArgument(
                name: "row count in the snapshot of index/huge", value: "\(Int64.max)", limit: "0..<\(Int32.max)")
        ) {
            try await system.actor(VectorIndexActor.self, key: "huge").vectorCount()
        }
        let other = try makeSystem([CPUBackend()], storage: storage)
        try other.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 5) }
        await #expect(throws: GPUBridgeError.sizeMismatch(name: "snapshot dim of index/snap", expected: 5, actual: 4)) {
            try await other.actor(VectorIndexActor.self, key: "snap").vectorCount()
        }
    }
}
