import Foundation
import GPUBridge
import GPUBridgeActors

extension Suites {
    /// What journaling costs: upserts of 100 rows of dim 384 into one vector index with every call journaled to a
    /// SQLite file (`synchronous = FULL`, and `NORMAL`) against the same without a journal, one call at a time and 16
    /// at once (group commit), interleaved; then the time to recover an index from a journal of `size` rows (1 000 000 by
    /// default) with no snapshot.
    func durability(_ device: Device) async throws -> [Figure] {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "gpubridge-bench-\(UUID().uuidString)"
        ).path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dim = 384, batch = 100
        var values = SplitMix64(seed: 14)
        let rows = values.floats(batch * dim, -1, 1)
        func system(journal: Bool, file: String, sync: SQLiteActorStorage.Sync = .full) throws -> EmbeddedActorSystem {
            var options = BridgeOptions()
            options.cacheDirectory = nil
            options.backendOrder = [device.id.backend]
            var actorOptions = ActorSystemOptions()
            actorOptions.durability.journal = journal
            actorOptions.durability.checkpointEntries = 1 << 30  // no checkpoint inside a measurement
            actorOptions.durability.checkpointBytes = Int.max
            actorOptions.durability.checkpointAge = .seconds(86_400)
            let system = try EmbeddedActorSystem(
                bridge: try Bridge(options: options, backends: [device.backend]),
                storage: try SQLiteActorStorage(path: "\(folder)/\(file)", sync: sync), options: actorOptions)
            try system.register(VectorIndexActor.self, as: "index") {
                VectorIndexActor(actorSystem: $0, dim: dim, initialCapacity: 1 << 16)
            }
            return system
        }
        let journaled = try system(journal: true, file: "journaled.sqlite")
        let unsynced = try system(journal: true, file: "normal.sqlite", sync: .normal)
        let volatile = try system(journal: false, file: "volatile.sqlite")
        var figures: [Figure] = []
        let calls = 64
        for inFlight in [1, 16] {
            progress.say("durability: upserts of \(batch) x \(dim), \(inFlight) in flight, journaled vs not")
            var next = 0
            func run(_ system: EmbeddedActorSystem) async throws -> Bool {
                let index = try system.actor(VectorIndexActor.self, key: "bench-\(inFlight)")
                let first = next
                next += calls
                let before = try await index.vectorCount()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    var issued = 0
                    func add() {
                        let ids = Array((first + issued) * batch..<(first + issued + 1) * batch)
                        issued += 1
                        group.addTask { _ = try await index.upsert(ids: ids, vectors: rows) }
                    }
                    while issued < min(inFlight, calls) { add() }
                    while try await group.next() != nil { if issued < calls { add() } }
                }
                return try await index.vectorCount() == before + calls * batch
            }
            // The disk's roof for the same durable appends: the encoded entries appended to a plain file with one
            // fdatasync per group of `inFlight` calls (what any write-ahead log must at least do), no database.
            let entry = try VectorIndexActor.encode(.upsert(ids: Array(0..<batch), vectors: rows))
            func roof() throws -> Bool {
                let path = "\(folder)/roof-\(inFlight).log"
                let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
                guard fd >= 0 else { return false }
                defer {
                    close(fd)
                    unlink(path)
                }
                var written = 0
                for call in 0..<calls {
                    written += entry.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
                    if (call + 1) % inFlight == 0 || call == calls - 1 {
                        guard fdatasync(fd) == 0 else { return false }
                    }
                }
                return written == calls * entry.count
            }
            var withJournal: [Duration] = [], normal: [Duration] = [], without: [Duration] = [], disk: [Duration] = []
            var okWith = true, okNormal = true, okWithout = true, okDisk = true
            let clock = ContinuousClock()
            _ = try await run(journaled)
            _ = try await run(unsynced)
            _ = try await run(volatile)
            for _ in 0..<max(repeats, 5) {
                var t = clock.now
                okWith = try await run(journaled) && okWith
                withJournal.append(clock.now - t)
                t = clock.now
                okNormal = try await run(unsynced) && okNormal
                normal.append(clock.now - t)
                t = clock.now
                okWithout = try await run(volatile) && okWithout
                without.append(clock.now - t)
                t = clock.now
                okDisk = try roof() && okDisk
                disk.append(clock.now - t)
            }
            let perSecond: (Double) -> Double = { Double(calls * batch) / $0 }
            let a = figure(
                "durability", "upsert 100 x 384, journaled (SQLite FULL), \(inFlight) in flight", device: device,
                unit: "rows/s", size: calls * batch, sizeUnit: "rows", samples: withJournal, verified: okWith,
                note: "synced per commit, group commit", rate: perSecond)
            let c = figure(
                "durability", "upsert 100 x 384, journaled (SQLite NORMAL), \(inFlight) in flight", device: device,
                unit: "rows/s", size: calls * batch, sizeUnit: "rows", samples: normal, verified: okNormal,
                note: "survives kill -9, not power loss", rate: perSecond)
            let b = figure(
                "durability", "upsert 100 x 384, no journal, \(inFlight) in flight", device: device,
                unit: "rows/s", size: calls * batch, sizeUnit: "rows", samples: without, verified: okWithout,
                rate: perSecond)
            let d = figure(
                "durability", "append the same entries to a file, fdatasync per \(inFlight)", device: device,
                unit: "rows/s", size: calls * batch, sizeUnit: "rows", samples: disk, verified: okDisk,
                note: "the disk's roof for a durable log", rate: perSecond)
            figures += [
                a, c, b, d,
                ratio(a, over: d, name: "journaled FULL / disk roof, \(inFlight) in flight"),
                ratio(a, over: b, name: "journaled FULL / no journal, \(inFlight) in flight", note: "target >= 0.5"),
                ratio(c, over: b, name: "journaled NORMAL / no journal, \(inFlight) in flight", note: "target >= 0.5"),
            ]
        }
        _ = await journaled.shutdown()
        _ = await unsynced.shutdown()
        _ = await volatile.shutdown()

        // Recovery: a journal of `total` rows (written 16 calls at a time), no snapshot; a new system activates it.
        let total = size ?? 1_000_000
        progress.say("durability: journaling \(total) rows, then recovering them")
        let writer = try system(journal: true, file: "recovery.sqlite")
        let index = try writer.actor(VectorIndexActor.self, key: "recovery")
        let callsNeeded = (total + batch - 1) / batch
        var issued = 0
        try await withThrowingTaskGroup(of: Void.self) { group in
            func add() {
                let ids = Array(issued * batch..<(issued + 1) * batch)
                issued += 1
                group.addTask { _ = try await index.upsert(ids: ids, vectors: rows) }
            }
            while issued < min(16, callsNeeded) { add() }
            while try await group.next() != nil { if issued < callsNeeded { add() } }
        }
        // The writer is abandoned without a deactivation, as a crashed process would be.
        let reader = try system(journal: true, file: "recovery.sqlite")
        let clock = ContinuousClock()
        let start = clock.now
        let recovered = try await reader.actor(VectorIndexActor.self, key: "recovery").vectorCount()
        let elapsed = clock.now - start
        let journalBytes = try await SQLiteActorStorage(path: "\(folder)/recovery.sqlite")
            .status(of: GPUActorID(type: "index", key: "recovery")).journalBytes
        figures.append(
            figure(
                "durability", "recover \(callsNeeded * batch) journaled rows of dim \(dim)", device: device,
                unit: "s", size: callsNeeded * batch, sizeUnit: "rows", samples: [elapsed],
                verified: recovered == callsNeeded * batch,
                note: "\(callsNeeded) entries, \(journalBytes >> 20) MiB of journal, replayed from SQLite",
                rate: { $0 }))
        // The same index as a snapshot: written in chunks (trimming the journal), then restored by a new system.
        progress.say("durability: snapshot and restore of \(recovered) rows")
        let recoveredIndex = try reader.actor(VectorIndexActor.self, key: "recovery")
        var t = clock.now
        try await recoveredIndex.checkpoint()
        let snapshotTime = clock.now - t
        let head = try await SQLiteActorStorage(path: "\(folder)/recovery.sqlite")
            .status(of: GPUActorID(type: "index", key: "recovery")).snapshot
        let restorer = try system(journal: true, file: "recovery.sqlite")
        t = clock.now
        let restored = try await restorer.actor(VectorIndexActor.self, key: "recovery").vectorCount()
        let restoreTime = clock.now - t
        let bytes = head?.bytes ?? 0
        let chunkNote = "\(bytes >> 20) MiB in \(head?.chunks ?? 0) chunks"
        figures.append(
            figure(
                "durability", "snapshot \(recovered) rows of dim \(dim)", device: device, unit: "s",
                size: recovered, sizeUnit: "rows", samples: [snapshotTime], verified: head != nil,
                note: chunkNote, rate: { $0 }))
        figures.append(
            figure(
                "durability", "restore \(recovered) rows of dim \(dim) from the snapshot", device: device,
                unit: "s", size: recovered, sizeUnit: "rows", samples: [restoreTime],
                verified: restored == recovered, note: chunkNote, rate: { $0 }))
        _ = await restorer.shutdown()  // the writer and reader stay abandoned: each was fenced off by the next claim
        return figures
    }
}
