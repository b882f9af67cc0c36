import GPUBridge

/// Where actors keep their durable state: per actor (type, key), a **journal** of mutations, a chunked **snapshot**
/// of the state as of some journal position, and an **epoch** that fences older activations out.
///
/// The contract every implementation keeps (the `DurableActor` machinery and the cluster rely on it):
/// - `claim` raises the actor's epoch by one and returns it with the current snapshot head. From then on only that
///   epoch may append or commit a snapshot: an `append` or `commitSnapshot` with an older epoch throws
///   `ActorStorageError.fenced` and writes nothing. So an activation that lost its node (a zombie) cannot write behind
///   the activation that replaced it.
/// - `append` commits its entries before it returns (one transaction; concurrent appends of many actors may share one),
///   or throws and commits none of them. Sequences are 1, 2, 3, ... per actor with no gap; an append whose first
///   sequence is not one past the last stored throws `ActorStorageError.sequenceGap` and writes nothing.
/// - A snapshot is written as chunks under a `SnapshotID` that no other snapshot of the actor uses, then made current
///   by `commitSnapshot`, which in one transaction records the head and deletes the journal entries it covers and the
///   chunks of every other snapshot. A crash before the commit leaves the old head and its journal untouched.
/// - `readJournal` returns entries in sequence order.
///
/// Implementations are safe to call from any task. Errors name the actor and the operation.
public protocol ActorStorage: Sendable {
    /// Claims `id` for a new activation: its epoch goes up by one (1 for an actor never seen); returns that epoch and
    /// the current snapshot head (nil: no snapshot, replay the journal from sequence 1).
    ///
    /// `token` is the activation's fencing token (a cluster's directory activation number; nil outside a cluster).
    /// The storage keeps the highest token that claimed: a claim with a lower one throws `ActorStorageError.fenced`
    /// and changes nothing, so an activation the cluster replaced (a zombie reactivating after it was declared dead)
    /// cannot take the actor back from its successor; a claim with the same or a higher token succeeds.
    func claim(_ id: GPUActorID, token: Int64?) async throws -> ActorClaim
    /// Chunk `index` (0-based) of snapshot `snapshot` of `id`.
    func readChunk(_ id: GPUActorID, snapshot: SnapshotID, index: Int) async throws -> [UInt8]
    /// Up to `limit` journal entries of `id` with a sequence above `sequence`, in sequence order.
    func readJournal(_ id: GPUActorID, after sequence: Int64, limit: Int) async throws -> [JournalEntry]
    /// Appends `entries` (consecutive sequences, following the last stored one) to `id`'s journal if `epoch` is still
    /// the actor's epoch; durable when this returns.
    func append(_ entries: [JournalEntry], to id: GPUActorID, epoch: Int64) async throws
    /// Stores chunk `index` of snapshot `snapshot` of `id` (not yet current; a second write of the same chunk
    /// replaces it) if `epoch` is still the actor's epoch.
    func writeChunk(_ bytes: [UInt8], of id: GPUActorID, snapshot: SnapshotID, index: Int, epoch: Int64) async throws
    /// Makes `head` the current snapshot of `id` if `epoch` is still the actor's epoch: in one transaction, records
    /// it, deletes the journal entries up to `head.id.sequence` and the chunks of every other snapshot.
    func commitSnapshot(_ head: SnapshotHead, of id: GPUActorID, epoch: Int64) async throws
    /// Forgets `id`'s snapshot and journal. Its epoch goes up by one, so an activation still running cannot write.
    func delete(_ id: GPUActorID) async throws
    /// What is stored for `id` (without claiming it): epoch, snapshot head, journal length and bytes.
    func status(of id: GPUActorID) async throws -> ActorStorageStatus
}

extension ActorStorage {
    /// `claim(id, token: nil)`: a claim outside a cluster.
    public func claim(_ id: GPUActorID) async throws -> ActorClaim { try await claim(id, token: nil) }
}

/// What `claim` returns: the epoch the new activation writes with, and where its state starts.
/// A value owned by the activation that claimed; any thread may read it.
public struct ActorClaim: Sendable, Hashable {
    public var epoch: Int64
    public var snapshot: SnapshotHead?

    public init(epoch: Int64, snapshot: SnapshotHead?) {
        self.epoch = epoch
        self.snapshot = snapshot
    }
}

/// Names one snapshot of an actor: the epoch that wrote it and the last journal sequence it includes. An activation
/// writes at most one snapshot per sequence, so no two snapshots of an actor share an id.
/// A value; any thread.
public struct SnapshotID: Sendable, Hashable, Codable, CustomStringConvertible {
    public var epoch: Int64
    public var sequence: Int64

    public init(epoch: Int64, sequence: Int64) {
        self.epoch = epoch
        self.sequence = sequence
    }

    public var description: String { "snapshot e\(epoch)/s\(sequence)" }
}

/// The current snapshot of an actor: its id, how many chunks and bytes it has, and the call ids the actor remembered
/// when it was taken (so a retry of a call the snapshot already includes is still recognised).
/// A value kept by the storage and the activation; any thread. Holds the remembered call ids (up to
/// `DurabilityOptions.rememberedCalls` strings).
public struct SnapshotHead: Sendable, Hashable {
    public var id: SnapshotID
    public var chunks: Int
    public var bytes: Int64
    public var recentCallIDs: [String]

    public init(id: SnapshotID, chunks: Int, bytes: Int64, recentCallIDs: [String]) {
        self.id = id
        self.chunks = chunks
        self.bytes = bytes
        self.recentCallIDs = recentCallIDs
    }
}

/// One journaled mutation: its position, the id of the call that made it (if the call carried one) and its bytes
/// (the actor type's own encoding).
/// A value; any thread. Holds its bytes (copied on write, as arrays are).
public struct JournalEntry: Sendable, Hashable {
    public var sequence: Int64
    public var callID: String?
    public var bytes: [UInt8]

    public init(sequence: Int64, callID: String?, bytes: [UInt8]) {
        self.sequence = sequence
        self.callID = callID
        self.bytes = bytes
    }
}

extension JournalEntry {
    /// Checks that `entries` continue a journal whose last stored sequence is `last` (consecutive, starting at
    /// `last + 1`); throws `ActorStorageError.sequenceGap` naming the first that does not. Every storage's `append`
    /// runs it before writing anything.
    public static func checkConsecutive(_ entries: [JournalEntry], after last: Int64, actor: GPUActorID) throws {
        var next = last + 1
        for entry in entries {
            guard entry.sequence == next else {
                throw ActorStorageError.sequenceGap(actor: "\(actor)", expected: next, actual: entry.sequence)
            }
            next += 1
        }
    }
}

/// What a storage holds for one actor (`ActorStorage.status(of:)`).
/// A value, read fresh from the storage by each `status(of:)` call (one query); any thread.
public struct ActorStorageStatus: Sendable, Hashable {
    /// The epoch of the last claim (0: never claimed).
    public var epoch: Int64
    public var snapshot: SnapshotHead?
    /// Journal entries stored after the snapshot.
    public var journalEntries: Int
    /// Bytes of those entries.
    public var journalBytes: Int64
    /// The last stored sequence (the snapshot's when the journal is empty; 0 when there is neither).
    public var lastSequence: Int64

    public init(epoch: Int64, snapshot: SnapshotHead?, journalEntries: Int, journalBytes: Int64, lastSequence: Int64) {
        self.epoch = epoch
        self.snapshot = snapshot
        self.journalEntries = journalEntries
        self.journalBytes = journalBytes
        self.lastSequence = lastSequence
    }
}

/// Why a storage refused a write. Crosses the wire (`Codable`) so a remote caller sees the same error.
/// A value; any thread.
public enum ActorStorageError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    /// `epoch` is no longer `actor`'s epoch (`current`): another activation claimed it; nothing was written.
    case fenced(actor: String, operation: String, epoch: Int64, current: Int64)
    /// The first sequence of an append is not one past the last stored (`expected`); nothing was written.
    case sequenceGap(actor: String, expected: Int64, actual: Int64)
    /// Stored bytes that cannot be what they claim to be (a missing chunk, a journal gap, an undecodable entry).
    case corrupt(actor: String, detail: String)

    public var description: String {
        switch self {
        case let .fenced(actor, operation, epoch, current):
            return "\(operation) of \(actor) refused: epoch \(epoch) was fenced off by epoch \(current) "
                + "(the actor was activated again elsewhere; this activation may no longer write)"
        case let .sequenceGap(actor, expected, actual):
            return
                "journal append to \(actor) refused: its first sequence is \(actual), the journal expects \(expected)"
        case let .corrupt(actor, detail):
            return "stored state of \(actor) is corrupt: \(detail)"
        }
    }
}

/// The size limit of one stored snapshot chunk, shared by the storages that keep chunks as database rows. A namespace.
public enum SnapshotChunkLimit {
    /// 256 MiB: well under SQLite's 1 GB blob limit and PostgreSQL's 1 GB field limit.
    public static let maxBytes = 256 << 20

    /// Throws `invalidArgument` naming the chunk, its size and the limit when `count` bytes are too many.
    public static func check(_ count: Int, index: Int, of id: GPUActorID) throws(GPUBridgeError) {
        guard count <= maxBytes else {
            throw .invalidArgument(
                name: "snapshot chunk \(index) of \(id)", value: "\(count) bytes", limit: "at most \(maxBytes) bytes")
        }
    }
}
