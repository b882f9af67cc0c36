import GPUBridge
import Synchronization

/// What `DurableActor.mutate` did with a mutation.
/// A value returned to the call that mutated; any thread.
public enum MutationOutcome<Result: Sendable>: Sendable {
    /// Journaled (durable) at `sequence`, then applied with this result.
    case applied(Result, sequence: Int64)
    /// The call's id was already journaled by this actor (a retry of a call that committed): not applied again.
    case alreadyApplied
}

/// The journal bookkeeping of one durable actor: epoch, sequences, the queue of mutations waiting to be committed,
/// the exclusion between applying mutations and writing a snapshot, and the call ids remembered for retries.
///
/// Owned by its actor (`public let journal = ActorJournal()`) and used from that actor's isolation only; the lock
/// makes it `Sendable` and costs an uncontended lock per step.
public final class ActorJournal: Sendable {
    struct Pending: Sendable {
        var callID: String?
        var bytes: [UInt8]
        /// The actor's `Mutation` (this class is not generic; the same actor reads it back as that type).
        var mutation: any Sendable
        var continuation: CheckedContinuation<Completion, any Error>
        var duplicates: [CheckedContinuation<Completion, any Error>] = []
    }

    enum Completion: Sendable {
        /// The actor's `MutationResult`.
        case applied(any Sendable, sequence: Int64)
        case alreadyApplied
    }

    struct State {
        var active = false
        var epoch: Int64 = 0
        /// The last sequence applied to the live state.
        var applied: Int64 = 0
        /// The last sequence committed to storage (applied, or about to be).
        var committed: Int64 = 0
        var head: SnapshotHead?
        var entriesSinceSnapshot = 0
        var bytesSinceSnapshot = 0
        var oldestSinceSnapshot: ContinuousClock.Instant?
        var remembered: Set<String> = []
        var rememberedOrder: [String] = []
        var rememberedStart = 0
        var rememberLimit = 10_000
        var pending: [Pending] = []
        var flushing = false
        var exclusive = false
        var exclusiveWaiters: [CheckedContinuation<Void, Never>] = []
        var broken: (any Error)?
        var checkpointScheduled = false
        var statistics = JournalStatistics()
    }

    let state = Mutex(State())

    public init() {}

    /// Counters and positions of this journal.
    public var statistics: JournalStatistics {
        state.withLock { s in
            var out = s.statistics
            out.epoch = s.epoch
            out.appliedSequence = s.applied
            out.snapshotSequence = s.head?.id.sequence
            out.entriesSinceSnapshot = s.entriesSinceSnapshot
            out.rememberedCalls = s.remembered.count
            out.waitingMutations = s.pending.count
            return out
        }
    }

    // MARK: Remembered calls

    static func remember(_ id: String, in s: inout State) {
        guard s.rememberLimit > 0, s.remembered.insert(id).inserted else { return }
        s.rememberedOrder.append(id)
        while s.remembered.count > s.rememberLimit {
            s.remembered.remove(s.rememberedOrder[s.rememberedStart])
            s.rememberedStart += 1
        }
        if s.rememberedStart > 4096, s.rememberedStart * 2 > s.rememberedOrder.count {
            s.rememberedOrder.removeFirst(s.rememberedStart)
            s.rememberedStart = 0
        }
    }

    static func rememberedList(_ s: State) -> [String] { Array(s.rememberedOrder[s.rememberedStart...]) }

    // MARK: Lifecycle

    func activated(
        epoch: Int64, applied: Int64, head: SnapshotHead?, recent: [String], replayedEntries: Int,
        replayedBytes: Int, rememberLimit: Int
    ) {
        state.withLock { s in
            s.active = true
            s.epoch = epoch
            s.applied = applied
            s.committed = applied
            s.head = head
            s.entriesSinceSnapshot = replayedEntries
            s.bytesSinceSnapshot = replayedBytes
            s.oldestSinceSnapshot = replayedEntries > 0 ? .now : nil
            s.remembered = []
            s.rememberedOrder = []
            s.rememberedStart = 0
            s.rememberLimit = rememberLimit
            for id in recent { Self.remember(id, in: &s) }
            s.broken = nil
            s.checkpointScheduled = false
            s.statistics.replayedEntries += replayedEntries
        }
    }

    func deactivated() {
        state.withLock { s in
            s.active = false
            s.remembered = []
            s.rememberedOrder = []
            s.rememberedStart = 0
        }
    }

    // MARK: Mutations

    enum Enqueued {
        case queued(startFlush: Bool)
        case handled
    }

    /// Queues a mutation, or answers at once (a remembered call id, a broken or inactive journal).
    func enqueue(
        callID: String?, bytes: [UInt8], mutation: any Sendable,
        continuation: CheckedContinuation<Completion, any Error>, actor: GPUActorID
    ) -> Enqueued {
        state.withLock { s -> Enqueued in
            if let broken = s.broken {
                continuation.resume(throwing: broken)
                return .handled
            }
            guard s.active else {
                continuation.resume(
                    throwing: GPUBridgeError.backendUnavailable(
                        backend: "actors", reason: "\(actor) is not active: a mutation can only be made inside a call"))
                return .handled
            }
            if let callID {
                if let i = s.pending.firstIndex(where: { $0.callID == callID }) {
                    s.pending[i].duplicates.append(continuation)
                    s.statistics.duplicateCalls += 1
                    return .handled
                }
                if s.remembered.contains(callID) {
                    s.statistics.duplicateCalls += 1
                    continuation.resume(returning: .alreadyApplied)
                    return .handled
                }
            }
            s.pending.append(Pending(callID: callID, bytes: bytes, mutation: mutation, continuation: continuation))
            guard !s.flushing else { return .queued(startFlush: false) }
            s.flushing = true
            return .queued(startFlush: true)
        }
    }

    struct Batch {
        var epoch: Int64
        var items: [Pending]
        var entries: [JournalEntry]
    }

    /// The mutations waiting, with their sequences; nil (and the flush ends) when none wait.
    func takeBatch() -> Batch? {
        state.withLock { s -> Batch? in
            guard !s.pending.isEmpty, s.broken == nil else {
                s.flushing = false
                return nil
            }
            let items = s.pending
            s.pending = []
            var entries: [JournalEntry] = []
            entries.reserveCapacity(items.count)
            for (i, item) in items.enumerated() {
                entries.append(
                    JournalEntry(sequence: s.committed + 1 + Int64(i), callID: item.callID, bytes: item.bytes))
            }
            return Batch(epoch: s.epoch, items: items, entries: entries)
        }
    }

    /// The batch is durable (or, without journaling, accepted): advance the committed position and remember its
    /// call ids.
    func committed(_ batch: Batch, appended: Bool) {
        state.withLock { s in
            s.committed = batch.entries.last?.sequence ?? s.committed
            for entry in batch.entries {
                if let id = entry.callID { Self.remember(id, in: &s) }
                s.bytesSinceSnapshot += entry.bytes.count
            }
            s.entriesSinceSnapshot += batch.entries.count
            if s.oldestSinceSnapshot == nil { s.oldestSinceSnapshot = .now }
            guard appended else { return }
            s.statistics.appends += 1
            s.statistics.entriesAppended += batch.entries.count
            s.statistics.largestAppend = max(s.statistics.largestAppend, batch.entries.count)
        }
    }

    /// Fails every waiting mutation and refuses new ones with `error` until the next activation.
    func breakJournal(_ error: any Error, failing batch: [Pending]) {
        let waiting = state.withLock { s -> [Pending] in
            s.broken = s.broken ?? error
            s.flushing = false  // the flush that broke ends now
            defer { s.pending = [] }
            return s.pending
        }
        for item in batch + waiting {
            item.continuation.resume(throwing: error)
            for d in item.duplicates { d.resume(throwing: error) }
        }
    }

    func finished(_ item: Pending, _ result: Result<Completion, any Error>) {
        item.continuation.resume(with: result)
        for d in item.duplicates {
            switch result {
            case .success: d.resume(returning: .alreadyApplied)
            case let .failure(error): d.resume(throwing: error)
            }
        }
    }

    func setApplied(_ sequence: Int64) { state.withLock { $0.applied = sequence } }

    // MARK: Exclusion of applying and snapshotting

    func acquireExclusive() async {
        let acquired = state.withLock { s -> Bool in
            guard s.exclusive else {
                s.exclusive = true
                return true
            }
            return false
        }
        if acquired { return }
        await withCheckedContinuation { c in
            let now = state.withLock { s -> Bool in
                guard s.exclusive else {
                    s.exclusive = true
                    return true
                }
                s.exclusiveWaiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func releaseExclusive() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard !s.exclusiveWaiters.isEmpty else {
                s.exclusive = false
                return nil
            }
            return s.exclusiveWaiters.removeFirst()  // stays exclusive, handed over
        }
        next?.resume()
    }

    // MARK: Checkpoints

    /// Whether a background checkpoint is due now (and marks it scheduled).
    func checkpointDue(_ options: DurabilityOptions) -> Bool {
        state.withLock { s in
            guard s.active, s.broken == nil, !s.checkpointScheduled, s.entriesSinceSnapshot > 0 else { return false }
            let old = s.oldestSinceSnapshot.map { ContinuousClock.now - $0 >= options.checkpointAge } ?? false
            guard
                s.entriesSinceSnapshot >= options.checkpointEntries || s.bytesSinceSnapshot >= options.checkpointBytes
                    || old
            else { return false }
            s.checkpointScheduled = true
            return true
        }
    }

    func checkpointUnscheduled() { state.withLock { $0.checkpointScheduled = false } }

    /// Epoch, applied sequence and current head, read under the exclusion (nothing is being applied).
    func snapshotPoint() -> (epoch: Int64, applied: Int64, head: SnapshotHead?, remembered: [String], active: Bool) {
        state.withLock { s in (s.epoch, s.applied, s.head, Self.rememberedList(s), s.active) }
    }

    func snapshotCommitted(_ head: SnapshotHead, entriesCovered: Int, bytesCovered: Int) {
        state.withLock { s in
            s.head = head
            s.entriesSinceSnapshot = max(0, s.entriesSinceSnapshot - entriesCovered)
            s.bytesSinceSnapshot = max(0, s.bytesSinceSnapshot - bytesCovered)
            s.oldestSinceSnapshot = s.entriesSinceSnapshot > 0 ? .now : nil
            s.statistics.snapshots += 1
            s.statistics.lastSnapshotBytes = head.bytes
        }
    }
}

/// Counters and positions of one durable actor's journal (`ActorJournal.statistics`).
/// A value copied out under the journal's lock (`ActorJournal.statistics`); any thread.
public struct JournalStatistics: Sendable, Hashable, Codable {
    /// The epoch this activation writes with (0 when never activated).
    public var epoch: Int64 = 0
    /// The last journal sequence applied to the live state.
    public var appliedSequence: Int64 = 0
    /// The journal sequence the current snapshot includes (nil: no snapshot).
    public var snapshotSequence: Int64?
    /// Entries journaled since that snapshot.
    public var entriesSinceSnapshot = 0
    /// Append transactions made (each holds every mutation that was waiting).
    public var appends = 0
    public var entriesAppended = 0
    /// The most mutations one append carried.
    public var largestAppend = 0
    /// Entries replayed by activations.
    public var replayedEntries = 0
    /// Snapshots committed.
    public var snapshots = 0
    /// Bytes of the last snapshot committed (nil: none by this instance).
    public var lastSnapshotBytes: Int64?
    /// Calls recognised as retries of calls already journaled (not applied again).
    public var duplicateCalls = 0
    /// Call ids remembered now.
    public var rememberedCalls = 0
    /// Mutations queued for the next append now.
    public var waitingMutations = 0
}
