import GPUBridge
import GPUBridgeActors
import Testing

/// The `ActorStorage` contract, checked the same way against every implementation (in memory, SQLite, PostgreSQL).
/// `storage` must be empty for the actor type "contract" (a fresh database, or a fresh cluster name).
public func checkStorageContract(_ storage: any ActorStorage) async throws {
    let a = GPUActorID(type: "contract", key: "a")
    let b = GPUActorID(type: "contract", key: "b")
    func entry(_ seq: Int64, _ call: String? = nil) -> JournalEntry {
        JournalEntry(
            sequence: seq, callID: call,
            bytes: (0..<Int(seq) * 3).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seq)) })
    }

    // A new actor: epoch 1, no snapshot, empty journal.
    #expect(try await storage.status(of: a).epoch == 0)
    let first = try await storage.claim(a)
    #expect(first.epoch == 1)
    #expect(first.snapshot == nil)
    #expect(try await storage.readJournal(a, after: 0, limit: 10).isEmpty)

    // Appends keep order, call ids and bytes; reads page.
    try await storage.append([entry(1, "call-1"), entry(2)], to: a, epoch: 1)
    try await storage.append([entry(3, "call-3")], to: a, epoch: 1)
    #expect(
        try await storage.readJournal(a, after: 0, limit: 10) == [entry(1, "call-1"), entry(2), entry(3, "call-3")])
    #expect(try await storage.readJournal(a, after: 1, limit: 1) == [entry(2)])
    #expect(try await storage.readJournal(a, after: 3, limit: 10).isEmpty)

    // A gap or a repeat is refused and writes nothing.
    await #expect(throws: ActorStorageError.sequenceGap(actor: "\(a)", expected: 4, actual: 5)) {
        try await storage.append([entry(5)], to: a, epoch: 1)
    }
    await #expect(throws: ActorStorageError.sequenceGap(actor: "\(a)", expected: 4, actual: 3)) {
        try await storage.append([entry(3)], to: a, epoch: 1)
    }
    await #expect(throws: ActorStorageError.sequenceGap(actor: "\(a)", expected: 6, actual: 7)) {
        try await storage.append([entry(4), entry(5), entry(7)], to: a, epoch: 1)
    }
    #expect(try await storage.status(of: a).lastSequence == 3)

    // A second claim fences the first epoch out of appends, chunk writes and commits.
    let second = try await storage.claim(a)
    #expect(second.epoch == 2)
    await #expect(throws: ActorStorageError.fenced(actor: "\(a)", operation: "journal append", epoch: 1, current: 2)) {
        try await storage.append([entry(4)], to: a, epoch: 1)
    }
    let snapshot = SnapshotID(epoch: 2, sequence: 4)
    await #expect(throws: ActorStorageError.self) {
        try await storage.writeChunk([1], of: a, snapshot: snapshot, index: 0, epoch: 1)
    }
    try await storage.append([entry(4, "call-4")], to: a, epoch: 2)

    // A snapshot at sequence 4 in two chunks (the first 1 MiB): committing it trims entries 1...4.
    let big = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
    try await storage.writeChunk(big, of: a, snapshot: snapshot, index: 0, epoch: 2)
    try await storage.writeChunk([9, 8, 7], of: a, snapshot: snapshot, index: 1, epoch: 2)
    let head = SnapshotHead(id: snapshot, chunks: 2, bytes: Int64(big.count + 3), recentCallIDs: ["call-1", "call-4"])
    await #expect(throws: ActorStorageError.self) {
        try await storage.commitSnapshot(
            SnapshotHead(id: snapshot, chunks: 3, bytes: 0, recentCallIDs: []), of: a, epoch: 2)
    }
    await #expect(throws: ActorStorageError.fenced(actor: "\(a)", operation: "snapshot commit", epoch: 1, current: 2)) {
        try await storage.commitSnapshot(head, of: a, epoch: 1)
    }
    try await storage.append([entry(5)], to: a, epoch: 2)
    try await storage.commitSnapshot(head, of: a, epoch: 2)
    var status = try await storage.status(of: a)
    #expect(status.snapshot == head)
    #expect(status.journalEntries == 1)
    #expect(status.lastSequence == 5)
    #expect(try await storage.readJournal(a, after: 0, limit: 10) == [entry(5)])
    #expect(try await storage.readChunk(a, snapshot: snapshot, index: 0) == big)
    #expect(try await storage.readChunk(a, snapshot: snapshot, index: 1) == [9, 8, 7])
    await #expect(throws: ActorStorageError.self) { try await storage.readChunk(a, snapshot: snapshot, index: 2) }

    // Appends continue after the snapshot; a snapshot written but never committed (a crash before the commit) changes
    // nothing: the next claim sees the old head and the whole journal after it.
    try await storage.append([entry(6)], to: a, epoch: 2)
    let orphan = SnapshotID(epoch: 2, sequence: 6)
    try await storage.writeChunk([1, 2, 3], of: a, snapshot: orphan, index: 0, epoch: 2)
    let third = try await storage.claim(a)
    #expect(third.epoch == 3)
    #expect(third.snapshot == head)
    #expect(try await storage.readJournal(a, after: 4, limit: 10) == [entry(5), entry(6)])
    // The next commit removes the orphan's chunks and the old snapshot's.
    let next = SnapshotID(epoch: 3, sequence: 6)
    try await storage.writeChunk([42], of: a, snapshot: next, index: 0, epoch: 3)
    try await storage.commitSnapshot(SnapshotHead(id: next, chunks: 1, bytes: 1, recentCallIDs: []), of: a, epoch: 3)
    await #expect(throws: ActorStorageError.self) { try await storage.readChunk(a, snapshot: orphan, index: 0) }
    await #expect(throws: ActorStorageError.self) { try await storage.readChunk(a, snapshot: snapshot, index: 0) }
    #expect(try await storage.readChunk(a, snapshot: next, index: 0) == [42])
    status = try await storage.status(of: a)
    #expect(status.journalEntries == 0)
    #expect(status.lastSequence == 6)

    // Another actor is untouched by all of that; concurrent appends of many actors all commit.
    #expect(try await storage.status(of: b).epoch == 0)
    let keys = (0..<40).map { GPUActorID(type: "contract", key: "many-\($0)") }
    for key in keys { _ = try await storage.claim(key) }
    try await withThrowingTaskGroup(of: Void.self) { group in
        for key in keys {
            group.addTask {
                for seq in Int64(1)...5 {
                    try await storage.append([entry(seq, "\(key.key)-\(seq)")], to: key, epoch: 1)
                }
            }
        }
        try await group.waitForAll()
    }
    for key in keys {
        let journal = try await storage.readJournal(key, after: 0, limit: 100)
        #expect(journal.map(\.sequence) == [1, 2, 3, 4, 5], "\(key)")
        #expect(journal.map(\.callID) == (1...5).map { "\(key.key)-\($0)" }, "\(key)")
    }

    // Delete forgets the state and fences whoever still writes.
    try await storage.delete(a)
    status = try await storage.status(of: a)
    #expect(status.epoch == 4)
    #expect(status.snapshot == nil)
    #expect(status.journalEntries == 0)
    await #expect(throws: ActorStorageError.self) { try await storage.append([entry(7)], to: a, epoch: 3) }
    let fresh = try await storage.claim(a)
    #expect(fresh.epoch == 5 && fresh.snapshot == nil)

    // Fencing tokens (a cluster's directory activation numbers): a claim with a token lower than the highest that
    // claimed is refused and changes nothing; the same or a higher token claims; a claim without a token (outside a
    // cluster) neither checks nor lowers it.
    let t = GPUActorID(type: "contract", key: "tokens")
    #expect(try await storage.claim(t, token: 7).epoch == 1)
    #expect(try await storage.claim(t, token: 7).epoch == 2)  // the same activation again (after an idle deactivation)
    #expect(try await storage.claim(t, token: 9).epoch == 3)
    do {
        _ = try await storage.claim(t, token: 8)
        Issue.record("a claim with token 8 succeeded after token 9 claimed")
    } catch let error as ActorStorageError {
        guard case let .fenced(actor, _, epoch, current) = error else { throw error }
        #expect(actor == "\(t)" && epoch == 8 && current == 9)
    }
    #expect(try await storage.status(of: t).epoch == 3)  // the refused claim changed nothing
    try await storage.append([entry(1)], to: t, epoch: 3)  // the epoch of token 9 still writes
    #expect(try await storage.claim(t).epoch == 4)
    await #expect(throws: ActorStorageError.self) { _ = try await storage.claim(t, token: 8) }
    #expect(try await storage.claim(t, token: 10).epoch == 5)
}
