import GPUBridge
import GPUBridgeActors
import Synchronization

/// Wraps a storage and fails chosen operations, as a disk or database outage would: the failing operation writes
/// nothing and throws `GPUBridgeError.io`.
public final class FaultInjectingActorStorage: ActorStorage {
    public struct Faults: Sendable {
        /// Appends to fail from now on (each failed one counts down).
        public var failAppends = 0
        /// Snapshot commits to fail.
        public var failCommits = 0
        /// Chunk writes to fail.
        public var failChunkWrites = 0
        /// Claims to fail.
        public var failClaims = 0
    }

    public let inner: any ActorStorage
    private let faults = Mutex(Faults())
    private let held = Mutex<(holding: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init(_ inner: any ActorStorage) { self.inner = inner }

    public func inject(_ change: (inout Faults) -> Void) { faults.withLock { change(&$0) } }

    /// From now on appends wait (before reaching the inner storage) until `releaseAppends()`.
    public func holdAppends() { held.withLock { $0.holding = true } }

    /// Lets the waiting appends go on, and later ones pass.
    public func releaseAppends() {
        let waiting = held.withLock { h -> [CheckedContinuation<Void, Never>] in
            h.holding = false
            defer { h.waiters = [] }
            return h.waiters
        }
        for c in waiting { c.resume() }
    }

    /// Appends waiting now.
    public var heldAppends: Int { held.withLock { $0.waiters.count } }

    private func take(_ path: WritableKeyPath<Faults, Int>, _ operation: String) throws {
        let fail = faults.withLock { f -> Bool in
            guard f[keyPath: path] > 0 else { return false }
            f[keyPath: path] -= 1
            return true
        }
        if fail {
            throw GPUBridgeError.io(
                path: "fault-injecting storage", operation: operation, errno: 5, message: "injected I/O error")
        }
    }

    public func claim(_ id: GPUActorID, token: Int64?) async throws -> ActorClaim {
        try take(\.failClaims, "claim")
        return try await inner.claim(id, token: token)
    }

    public func readChunk(_ id: GPUActorID, snapshot: SnapshotID, index: Int) async throws -> [UInt8] {
        try await inner.readChunk(id, snapshot: snapshot, index: index)
    }

    public func readJournal(_ id: GPUActorID, after sequence: Int64, limit: Int) async throws -> [JournalEntry] {
        try await inner.readJournal(id, after: sequence, limit: limit)
    }

    public func append(_ entries: [JournalEntry], to id: GPUActorID, epoch: Int64) async throws {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let hold = held.withLock { h -> Bool in
                guard h.holding else { return false }
                h.waiters.append(c)
                return true
            }
            if !hold { c.resume() }
        }
        try take(\.failAppends, "journal append")
        try await inner.append(entries, to: id, epoch: epoch)
    }

    public func writeChunk(_ bytes: [UInt8], of id: GPUActorID, snapshot: SnapshotID, index: Int, epoch: Int64)
        async throws
    {
        try take(\.failChunkWrites, "snapshot chunk write")
        try await inner.writeChunk(bytes, of: id, snapshot: snapshot, index: index, epoch: epoch)
    }

    public func commitSnapshot(_ head: SnapshotHead, of id: GPUActorID, epoch: Int64) async throws {
        try take(\.failCommits, "snapshot commit")
        try await inner.commitSnapshot(head, of: id, epoch: epoch)
    }

    public func delete(_ id: GPUActorID) async throws { try await inner.delete(id) }

    public func status(of id: GPUActorID) async throws -> ActorStorageStatus { try await inner.status(of: id) }
}
