import Synchronization

/// Group commit: items submitted concurrently (journal appends of many actors) are committed together, one
/// transaction for whatever is waiting, so a durable write costs one commit (one `fsync`) per batch rather than per
/// item.
///
/// `submit` queues an item and suspends until the batch holding it has been committed (or refused, per item). The
/// first submitter finding no batch running starts a drain task; it commits what is queued, resumes each submitter
/// with its item's result, and goes on while items keep arriving. A batch holds at most `maxBatch` items.
///
/// Owned by a storage implementation; any task may submit. Costs one lock per item and one task per busy period.
public final class GroupCommitter<Item: Sendable>: Sendable {
    /// Commits `items` in one transaction; returns one result per item, in order.
    public typealias Commit = @Sendable ([Item]) async -> [Result<Void, any Error>]

    private struct Waiting {
        var item: Item
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var queue: [Waiting] = []
        var draining = false
        var batches = 0
        var items = 0
        var largest = 0
    }

    /// The largest number of items one batch commits.
    public let maxBatch: Int
    private let commit: Commit
    private let state = Mutex(State())

    public init(maxBatch: Int = 1024, commit: @escaping Commit) {
        self.maxBatch = max(1, maxBatch)
        self.commit = commit
    }

    /// Batches committed, items committed, and the largest batch so far.
    public var statistics: (batches: Int, items: Int, largest: Int) {
        state.withLock { ($0.batches, $0.items, $0.largest) }
    }

    /// Queues `item` and returns once the batch holding it is committed; throws the item's own error.
    public func submit(_ item: Item) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let start = state.withLock { s -> Bool in
                s.queue.append(Waiting(item: item, continuation: continuation))
                guard !s.draining else { return false }
                s.draining = true
                return true
            }
            if start { Task { await self.drain() } }
        }
    }

    private func drain() async {
        while true {
            let batch = state.withLock { s -> [Waiting] in
                guard !s.queue.isEmpty else {
                    s.draining = false
                    return []
                }
                let taken = Array(s.queue.prefix(maxBatch))
                s.queue.removeFirst(taken.count)
                s.batches += 1
                s.items += taken.count
                s.largest = max(s.largest, taken.count)
                return taken
            }
            guard !batch.isEmpty else { return }
            let results = await commit(batch.map(\.item))
            for (i, waiting) in batch.enumerated() {
                if i < results.count {
                    waiting.continuation.resume(with: results[i])
                } else {
                    waiting.continuation.resume(
                        throwing: ActorStorageError.corrupt(
                            actor: "group commit",
                            detail: "the commit returned \(results.count) results for \(batch.count) items"))
                }
            }
        }
    }
}
