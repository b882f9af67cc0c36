import GPUBridge
import Synchronization

/// Actor state in process memory: for tests and demos (everything is lost with the process). Keeps the whole
/// `ActorStorage` contract (epochs, fencing, gap checks, atomic snapshot commit) under one lock, and counts what it
/// was asked to do.
///
/// Owned by whoever made it; any task may call it; each call costs one lock and copies of the bytes it moves.
public final class InMemoryActorStorage: ActorStorage {
    private struct Actor {
        var epoch: Int64 = 0
        var token: Int64 = 0
        var head: SnapshotHead?
        var chunks: [SnapshotID: [Int: [UInt8]]] = [:]
        var journal: [JournalEntry] = []
    }

    private struct State {
        var actors: [GPUActorID: Actor] = [:]
        var counts = Counts()
    }

    /// Operations done so far.
    public struct Counts: Sendable, Hashable {
        public var claims = 0
        public var appends = 0
        public var entriesAppended = 0
        public var snapshotsCommitted = 0
        public var chunksWritten = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Operations done so far.
    public var counts: Counts { state.withLock { $0.counts } }

    public func claim(_ id: GPUActorID, token: Int64?) async throws -> ActorClaim {
        try state.withLock { s throws(ActorStorageError) in
            let stored = s.actors[id]?.token ?? 0
            if let token {
                guard token >= stored else {
                    throw .fenced(actor: "\(id)", operation: "claim with token \(token)", epoch: token, current: stored)
                }
                s.actors[id, default: Actor()].token = token
            }
            s.counts.claims += 1
            s.actors[id, default: Actor()].epoch += 1
            let actor = s.actors[id]!
            return ActorClaim(epoch: actor.epoch, snapshot: actor.head)
        }
    }

    public func readChunk(_ id: GPUActorID, snapshot: SnapshotID, index: Int) async throws -> [UInt8] {
        try state.withLock { s in
            guard let bytes = s.actors[id]?.chunks[snapshot]?[index] else {
                throw ActorStorageError.corrupt(actor: "\(id)", detail: "chunk \(index) of \(snapshot) is missing")
            }
            return bytes
        }
    }

    public func readJournal(_ id: GPUActorID, after sequence: Int64, limit: Int) async throws -> [JournalEntry] {
        state.withLock { s in
            Array((s.actors[id]?.journal ?? []).lazy.filter { $0.sequence > sequence }.prefix(max(0, limit)))
        }
    }

    public func append(_ entries: [JournalEntry], to id: GPUActorID, epoch: Int64) async throws {
        try state.withLock { s in
            var actor = s.actors[id, default: Actor()]
            guard actor.epoch == epoch else {
                throw ActorStorageError.fenced(
                    actor: "\(id)", operation: "journal append", epoch: epoch, current: actor.epoch)
            }
            try JournalEntry.checkConsecutive(
                entries, after: actor.journal.last?.sequence ?? actor.head?.id.sequence ?? 0, actor: id)
            actor.journal += entries
            s.actors[id] = actor
            s.counts.appends += 1
            s.counts.entriesAppended += entries.count
        }
    }

    public func writeChunk(_ bytes: [UInt8], of id: GPUActorID, snapshot: SnapshotID, index: Int, epoch: Int64)
        async throws
    {
        try state.withLock { s in
            let current = s.actors[id]?.epoch ?? 0
            guard current == epoch else {
                throw ActorStorageError.fenced(
                    actor: "\(id)", operation: "snapshot chunk write", epoch: epoch, current: current)
            }
            s.actors[id]!.chunks[snapshot, default: [:]][index] = bytes
            s.counts.chunksWritten += 1
        }
    }

    public func commitSnapshot(_ head: SnapshotHead, of id: GPUActorID, epoch: Int64) async throws {
        try state.withLock { s in
            guard var actor = s.actors[id], actor.epoch == epoch else {
                throw ActorStorageError.fenced(
                    actor: "\(id)", operation: "snapshot commit", epoch: epoch,
                    current: s.actors[id]?.epoch ?? 0)
            }
            let chunks = actor.chunks[head.id] ?? [:]
            guard (0..<head.chunks).allSatisfy({ chunks[$0] != nil }) else {
                throw ActorStorageError.corrupt(
                    actor: "\(id)",
                    detail: "\(head.id) commits \(head.chunks) chunks, "
                        + "\(chunks.count) were written")
            }
            actor.head = head
            actor.chunks = [head.id: chunks]
            actor.journal.removeAll { $0.sequence <= head.id.sequence }
            s.actors[id] = actor
            s.counts.snapshotsCommitted += 1
        }
    }

    public func delete(_ id: GPUActorID) async throws {
        state.withLock { s in
            let epoch = (s.actors[id]?.epoch ?? 0) + 1
            var actor = Actor()
            actor.epoch = epoch
            s.actors[id] = actor
        }
    }

    public func status(of id: GPUActorID) async throws -> ActorStorageStatus {
        state.withLock { s in
            let actor = s.actors[id] ?? Actor()
            return ActorStorageStatus(
                epoch: actor.epoch, snapshot: actor.head, journalEntries: actor.journal.count,
                journalBytes: Int64(actor.journal.reduce(0) { $0 + $1.bytes.count }),
                lastSequence: actor.journal.last?.sequence ?? actor.head?.id.sequence ?? 0)
        }
    }
}
