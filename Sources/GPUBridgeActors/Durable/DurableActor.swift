import Distributed
import Foundation
import GPUBridge

/// A virtual actor whose state survives crashes: every state-changing call journals its mutation durably before the
/// call returns, and an activation restores the last snapshot and replays the journal after it.
///
/// An actor adopts it by naming its `Mutation` type and implementing four hooks; the extension implements `activate()`
/// and `deactivate()` (so `VirtualActor` needs nothing more), `mutate(_:)` and `writeCheckpoint()`:
/// - `restore(from:)`: build the live state (place it, allocate, upload) from a snapshot stream, or empty when nil.
/// - `apply(_:)`: apply one mutation to the live state. Live calls and replay both use it, in journal order, so it
///   must depend on nothing but the state and the mutation.
/// - `writeSnapshot(to:)`: stream the live state out. No mutation is applied while it runs.
/// - `release()`: drop the live state (device memory).
///
/// Guarantees (see docs/ACTORS.md, "Durability"):
/// - **Durable when acknowledged**: `mutate` returns after the storage committed the entry (group commit: mutations
///   waiting together share one transaction) and `apply` ran. If the append fails, the call fails and nothing was
///   applied. If `apply` fails after the commit, the call fails saying the entry is durable, the activation is
///   discarded, and the next activation replays it.
/// - **Exactly once under retries**: a mutation made by a call carrying an id (`ActorCallContext`) the actor remembers
///   is not applied again (`.alreadyApplied`). The last `DurabilityOptions.rememberedCalls` ids are remembered, across
///   activations (snapshots keep them; replay re-learns the journal's).
/// - **Fencing**: each activation claims a new epoch from the storage; appends and snapshot commits of an older epoch
///   are refused (`ActorStorageError.fenced`), so an activation that was replaced elsewhere cannot write behind the
///   new one. A fenced activation discards itself.
/// - **Checkpoints**: after an append, when the entries since the last snapshot pass `DurabilityOptions`' limits, a
///   snapshot is written in the background (reads go on; mutations wait) and committed with the journal trim in one
///   transaction. Deactivation writes a final one; if that fails the state is released anyway (the journal holds
///   every acknowledged mutation).
public protocol DurableActor: VirtualActor {
    /// One state change, as journaled.
    associatedtype Mutation: Sendable
    /// What applying a mutation tells the call that made it.
    associatedtype MutationResult: Sendable = Void

    /// Journal bookkeeping; implement as `public let journal = ActorJournal()`.
    var journal: ActorJournal { get }
    /// Builds the live state from `snapshot` (nil: the actor has none, start empty). Returns the device it lives on.
    func restore(from snapshot: SnapshotReader?) async throws -> DeviceID?
    /// Applies one mutation to the live state.
    func apply(_ mutation: Mutation) async throws -> MutationResult
    /// Writes the live state to `writer` (read it back with `restore(from:)`).
    func writeSnapshot(to writer: inout SnapshotWriter) async throws
    /// Drops the live state.
    func release() async
    /// The journal bytes of a mutation.
    static func encode(_ mutation: Mutation) throws -> [UInt8]
    /// The mutation of journal bytes (as `encode` wrote them).
    static func decode(_ bytes: [UInt8]) throws -> Mutation
}

extension DurableActor where Mutation: Codable {
    /// JSON; override with a binary encoding for bulk data.
    public static func encode(_ mutation: Mutation) throws -> [UInt8] { [UInt8](try JSONEncoder().encode(mutation)) }
    public static func decode(_ bytes: [UInt8]) throws -> Mutation {
        try JSONDecoder().decode(Mutation.self, from: Data(bytes))
    }
}

extension DurableActor {
    // MARK: Activation

    public func activate() async throws -> DeviceID? {
        let storage = actorSystem.storage
        let claim = try await storage.claim(id, token: ActivationFence.token(for: id))
        let reader = claim.snapshot.map { SnapshotReader(storage: storage, actor: id, head: $0) }
        let device: DeviceID?
        do {
            device = try await restore(from: reader)
            var applied = claim.snapshot?.id.sequence ?? 0
            var recent = claim.snapshot?.recentCallIDs ?? []
            var entries = 0, bytes = 0
            while true {
                // A page at a time (256 entries), so a long journal is never all in memory.
                let page = try await storage.readJournal(id, after: applied, limit: 256)
                if page.isEmpty { break }
                for entry in page {
                    guard entry.sequence == applied + 1 else {
                        throw ActorStorageError.corrupt(
                            actor: "\(id)", detail: "the journal jumps from sequence \(applied) to \(entry.sequence)")
                    }
                    let mutation: Mutation
                    do { mutation = try Self.decode(entry.bytes) } catch {
                        throw ActorStorageError.corrupt(
                            actor: "\(id)", detail: "journal entry \(entry.sequence) does not decode: \(error)")
                    }
                    _ = try await apply(mutation)
                    applied = entry.sequence
                    if let call = entry.callID { recent.append(call) }
                    entries += 1
                    bytes += entry.bytes.count
                }
            }
            journal.activated(
                epoch: claim.epoch, applied: applied, head: claim.snapshot, recent: recent,
                replayedEntries: entries, replayedBytes: bytes,
                rememberLimit: actorSystem.options.durability.rememberedCalls)
            lifecycle.attach(journal: journal)
        } catch {
            await release()
            throw error
        }
        return device
    }

    public func deactivate() async throws {
        do {
            try await writeCheckpoint()
        } catch {
            // Without a journal the snapshot is the only copy: keep the state.
            guard actorSystem.options.durability.journal else { throw error }
            actorSystem.logger.warning(
                "final snapshot failed; the journal holds every acknowledged mutation",
                metadata: ["actor": "\(id)", "error": "\(error)"])
        }
        await release()
        journal.deactivated()
    }

    // MARK: Mutations

    /// Journals `mutation` (durably), applies it and returns its result; `.alreadyApplied` when the current call's id
    /// (`ActorCallContext`) was journaled before. Call it inside a call (`withActivation`).
    @discardableResult
    public func mutate(_ mutation: Mutation) async throws -> MutationOutcome<MutationResult> {
        let bytes = try Self.encode(mutation)
        let callID = ActorCallContext.callID(for: id)
        let completion = try await withCheckedThrowingContinuation {
            (c: CheckedContinuation<ActorJournal.Completion, any Error>) in
            let enqueued = journal.enqueue(callID: callID, bytes: bytes, mutation: mutation, continuation: c, actor: id)
            if case .queued(startFlush: true) = enqueued {
                Task { [weak self] in
                    guard let self else { return }
                    _ = await self.whenLocal { await $0.flushJournal() }
                }
            }
        }
        switch completion {
        case let .applied(result, sequence):
            guard let typed = result as? MutationResult else {
                throw GPUBridgeError.backendFailure(
                    backend: "actors", call: "mutate \(id)", code: -1,
                    message: "applying returned \(type(of: result)), not \(MutationResult.self)")
            }
            return .applied(typed, sequence: sequence)
        case .alreadyApplied:
            return .alreadyApplied
        }
    }

    /// Commits what is waiting, one append per round, and applies it in journal order.
    func flushJournal() async {
        while let batch = journal.takeBatch() {
            if actorSystem.options.durability.journal {
                do {
                    try await actorSystem.storage.append(batch.entries, to: id, epoch: batch.epoch)
                } catch {
                    journal.breakJournal(error, failing: batch.items)
                    discardSoon(because: error)
                    return
                }
            }
            journal.committed(batch, appended: actorSystem.options.durability.journal)
            await journal.acquireExclusive()
            for (i, item) in batch.items.enumerated() {
                let sequence = batch.entries[i].sequence
                do {
                    guard let mutation = item.mutation as? Mutation else {
                        throw GPUBridgeError.backendFailure(
                            backend: "actors", call: "apply", code: -1,
                            message: "queued \(type(of: item.mutation)), not \(Mutation.self)")
                    }
                    let result = try await apply(mutation)
                    journal.setApplied(sequence)
                    journal.finished(item, .success(.applied(result, sequence: sequence)))
                } catch {
                    let failure = GPUBridgeError.backendFailure(
                        backend: "actors", call: "apply journal entry \(sequence) of \(id)", code: -1,
                        message:
                            "the mutation is durable but applying it failed (\(error)); the activation is discarded "
                            + "and the next one replays it")
                    journal.releaseExclusive()
                    journal.breakJournal(failure, failing: Array(batch.items[i...]))
                    discardSoon(because: failure)
                    return
                }
            }
            journal.releaseExclusive()
        }
        if journal.checkpointDue(actorSystem.options.durability) {
            Task { [weak self] in
                guard let self else { return }
                _ = await self.whenLocal { await $0.backgroundCheckpoint() }
            }
        }
    }

    /// A checkpoint as a call of the current activation (so a deactivation waits for it); nothing if inactive.
    func backgroundCheckpoint() async {
        defer { journal.checkpointUnscheduled() }
        do {
            _ = try await whileActive { try await writeCheckpoint() }
        } catch {
            actorSystem.logger.warning(
                "background checkpoint failed; the journal keeps growing until one succeeds",
                metadata: ["actor": "\(id)", "error": "\(error)"])
            if error is ActorStorageError { discardSoon(because: error) }
        }
    }

    /// Deactivates without a snapshot once the calls in flight end (the live state may not match the journal).
    func discardSoon(because error: any Error) {
        actorSystem.logger.error("discarding the activation", metadata: ["actor": "\(id)", "error": "\(error)"])
        Task { [weak self] in
            guard let self else { return }
            _ = try? await self.whenLocal { local in
                try await local.deactivateNow(using: {
                    await local.release()
                    local.journal.deactivated()
                })
            }
        }
    }

    // MARK: Checkpoints

    /// Writes a snapshot of the state as applied now and commits it, trimming the journal it covers. Does nothing
    /// when nothing was applied since the current snapshot. Call it inside a call (`withActivation`).
    public func writeCheckpoint() async throws {
        await journal.acquireExclusive()
        defer { journal.releaseExclusive() }
        let point = journal.snapshotPoint()
        guard point.active else { return }
        if let head = point.head, head.id.sequence == point.applied { return }
        if point.head == nil, point.applied == 0 { return }
        let before = journal.statistics
        let storage = actorSystem.storage
        var writer = SnapshotWriter(
            storage: storage, actor: id, epoch: point.epoch,
            snapshot: SnapshotID(epoch: point.epoch, sequence: point.applied),
            chunkBytes: actorSystem.options.durability.snapshotChunkBytes)
        try await writeSnapshot(to: &writer)
        try await writer.finish()
        let head = SnapshotHead(
            id: writer.snapshot, chunks: writer.chunks, bytes: writer.bytes,
            recentCallIDs: point.remembered)
        try await storage.commitSnapshot(head, of: id, epoch: point.epoch)
        // Entries committed after `applied` stay counted: they are not in this snapshot.
        let covered = Int(point.applied - (before.snapshotSequence ?? 0))
        journal.snapshotCommitted(head, entriesCovered: covered, bytesCovered: covered > 0 ? Int.max : 0)
    }
}
