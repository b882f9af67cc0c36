import Foundation
import GPUBridge
import GPUBridgeActors
import Logging
import PostgresNIO

/// Actor state in PostgreSQL: journals, chunked snapshots and epochs of every actor of a cluster (see `ActorStorage`
/// for the contract).
///
/// Schema (created by `PostgresStore.migrate()`; a `gb_actor_state` table of whole snapshots left by an older
/// version is converted into one-chunk snapshots and dropped):
/// ```sql
/// CREATE TABLE gb_actor_head (
///   cluster TEXT NOT NULL, actor_type TEXT NOT NULL, actor_key TEXT NOT NULL,
///   epoch BIGINT NOT NULL,              -- raised by each claim; appends and snapshot commits must carry it
///   token BIGINT NOT NULL,              -- the highest fencing token (directory activation number) that claimed
///   snapshot_epoch BIGINT, snapshot_seq BIGINT, chunk_count INTEGER, byte_count BIGINT,  -- NULL: no snapshot
///   recent_calls JSONB,                 -- call ids remembered at the snapshot
///   updated_at TIMESTAMPTZ NOT NULL,    -- the server's now() of the last claim or commit
///   PRIMARY KEY (cluster, actor_type, actor_key));
/// CREATE TABLE gb_actor_chunk (
///   cluster, actor_type, actor_key, snapshot_epoch BIGINT, snapshot_seq BIGINT, chunk INTEGER, bytes BYTEA,
///   PRIMARY KEY (cluster, actor_type, actor_key, snapshot_epoch, snapshot_seq, chunk));
/// CREATE TABLE gb_actor_journal (
///   cluster, actor_type, actor_key, seq BIGINT, epoch BIGINT, call_id TEXT, bytes BYTEA,
///   PRIMARY KEY (cluster, actor_type, actor_key, seq));
/// ```
/// Fencing: an append or commit reads the head row `FOR SHARE` in its transaction and compares epochs; a claim
/// updates that row, so it waits for writes in flight and every write after it sees the new epoch.
///
/// Appends are group-committed: concurrent appends (of any actors of this process) share one transaction, each in a
/// savepoint of its own, so one fenced actor does not fail the others; with `synchronous_commit` on (PostgreSQL's
/// default) a returned append is on the server's disk. Snapshot chunks are rows of at most `maxChunkBytes`, so a
/// snapshot is not bound by PostgreSQL's 1 GiB field limit.
///
/// Owned by whoever made it; any task may call it. Costs: one pooled connection per operation (per batch for
/// appends).
public final class PostgresActorStorage: ActorStorage {
    public let store: PostgresStore
    /// The cluster name the rows are keyed by.
    public let cluster: String
    /// The largest chunk `writeChunk` accepts.
    public static let maxChunkBytes = SnapshotChunkLimit.maxBytes
    private let committer: GroupCommitter<Append>

    struct Append: Sendable {
        var id: GPUActorID
        var epoch: Int64
        var entries: [JournalEntry]
    }

    public init(store: PostgresStore, cluster: String) {
        self.store = store
        self.cluster = cluster
        committer = GroupCommitter { items in await Self.commit(items, store: store, cluster: cluster) }
    }

    static let schema = [
        """
        CREATE TABLE IF NOT EXISTS gb_actor_head (
          cluster TEXT NOT NULL, actor_type TEXT NOT NULL, actor_key TEXT NOT NULL,
          epoch BIGINT NOT NULL,
          token BIGINT NOT NULL DEFAULT 0,
          snapshot_epoch BIGINT, snapshot_seq BIGINT, chunk_count INTEGER, byte_count BIGINT,
          recent_calls JSONB,
          updated_at TIMESTAMPTZ NOT NULL,
          PRIMARY KEY (cluster, actor_type, actor_key)
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS gb_actor_chunk (
          cluster TEXT NOT NULL, actor_type TEXT NOT NULL, actor_key TEXT NOT NULL,
          snapshot_epoch BIGINT NOT NULL, snapshot_seq BIGINT NOT NULL, chunk INTEGER NOT NULL,
          bytes BYTEA NOT NULL,
          PRIMARY KEY (cluster, actor_type, actor_key, snapshot_epoch, snapshot_seq, chunk)
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS gb_actor_journal (
          cluster TEXT NOT NULL, actor_type TEXT NOT NULL, actor_key TEXT NOT NULL,
          seq BIGINT NOT NULL, epoch BIGINT NOT NULL, call_id TEXT, bytes BYTEA NOT NULL,
          PRIMARY KEY (cluster, actor_type, actor_key, seq)
        )
        """,
        """
        DO $$ BEGIN
          IF to_regclass('gb_actor_state') IS NOT NULL THEN
            INSERT INTO gb_actor_head (cluster, actor_type, actor_key, epoch, snapshot_epoch, snapshot_seq, chunk_count,
                                       byte_count, recent_calls, updated_at)
              SELECT cluster, actor_type, actor_key, 0, 0, 0, 1, length(bytes), NULL, updated_at FROM gb_actor_state
              ON CONFLICT DO NOTHING;
            INSERT INTO gb_actor_chunk (cluster, actor_type, actor_key, snapshot_epoch, snapshot_seq, chunk, bytes)
              SELECT cluster, actor_type, actor_key, 0, 0, 0, bytes FROM gb_actor_state
              ON CONFLICT DO NOTHING;
            DROP TABLE gb_actor_state;
          END IF;
        END $$
        """,
        // Heads made before fencing tokens (only when needed: a no-op ALTER TABLE still takes an exclusive lock).
        """
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                         WHERE table_schema = current_schema() AND table_name = 'gb_actor_head'
                           AND column_name = 'token') THEN
            ALTER TABLE gb_actor_head ADD COLUMN token BIGINT NOT NULL DEFAULT 0;
          END IF;
        END $$
        """,
    ]

    // MARK: Rows

    typealias HeadRow = (Int64, Int64?, Int64?, Int?, Int64?, String?)

    private static func head(_ row: HeadRow, _ id: GPUActorID) throws -> (epoch: Int64, head: SnapshotHead?) {
        let (epoch, snapshotEpoch, sequence, chunks, bytes, calls) = row
        guard let snapshotEpoch, let sequence, let chunks, let bytes else { return (epoch, nil) }
        var recent: [String] = []
        if let calls {
            do { recent = try JSONDecoder().decode([String].self, from: Data(calls.utf8)) } catch {
                throw ActorStorageError.corrupt(
                    actor: "\(id)", detail: "recent call ids of the snapshot head: \(error)")
            }
        }
        return (
            epoch,
            SnapshotHead(
                id: SnapshotID(epoch: snapshotEpoch, sequence: sequence), chunks: chunks,
                bytes: bytes, recentCallIDs: recent)
        )
    }

    /// The head row of `id`, locked `FOR SHARE` (inside a transaction), checked against `epoch`.
    private static func fence(
        _ connection: PostgresConnection, _ cluster: String, _ id: GPUActorID, epoch: Int64,
        _ operation: String, _ logger: Logger
    ) async throws -> SnapshotHead? {
        let rows = try await connection.query(
            """
            SELECT epoch, snapshot_epoch, snapshot_seq, chunk_count, byte_count, recent_calls::text FROM gb_actor_head
            WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key) FOR SHARE
            """, logger: logger
        ).collect()
        let found = try rows.first.map { try head($0.decode(HeadRow.self), id) }
        guard let found, found.epoch == epoch else {
            throw ActorStorageError.fenced(
                actor: "\(id)", operation: operation, epoch: epoch, current: found?.epoch ?? 0)
        }
        return found.head
    }

    // MARK: ActorStorage

    public func claim(_ id: GPUActorID, token: Int64?) async throws -> ActorClaim {
        let cluster = cluster, logger = store.logger
        let given = token ?? -1  // -1: no token (tokens are activation numbers, 1 and up)
        return try await store.passingThroughConnection("claim \(id)") { connection in
            // One statement: the token check and the epoch raise happen under the row lock of the upsert.
            let rows = try await connection.query(
                """
                INSERT INTO gb_actor_head (cluster, actor_type, actor_key, epoch, token, updated_at)
                VALUES (\(cluster), \(id.type), \(id.key), 1, GREATEST(\(given), 0), now())
                ON CONFLICT (cluster, actor_type, actor_key)
                DO UPDATE SET epoch = gb_actor_head.epoch + 1, token = GREATEST(gb_actor_head.token, EXCLUDED.token),
                              updated_at = now()
                WHERE \(given) = -1 OR gb_actor_head.token <= \(given)
                RETURNING epoch, snapshot_epoch, snapshot_seq, chunk_count, byte_count, recent_calls::text
                """, logger: logger
            ).collect()
            guard let row = rows.first else {
                let current = try await connection.query(
                    """
                    SELECT token FROM gb_actor_head
                    WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                    """, logger: logger
                ).collect().first?.decode(Int64.self)
                guard let current, let token else {
                    throw ActorStorageError.corrupt(actor: "\(id)", detail: "the claim returned no head row")
                }
                throw ActorStorageError.fenced(
                    actor: "\(id)", operation: "claim with token \(token)", epoch: token, current: current)
            }
            let found = try Self.head(try row.decode(HeadRow.self), id)
            return ActorClaim(epoch: found.epoch, snapshot: found.head)
        }
    }

    public func readChunk(_ id: GPUActorID, snapshot: SnapshotID, index: Int) async throws -> [UInt8] {
        let cluster = cluster, logger = store.logger
        let data = try await store.passingThroughConnection("read chunk \(index) of \(snapshot) of \(id)") {
            connection in
            let rows = try await connection.query(
                """
                SELECT bytes FROM gb_actor_chunk
                WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                  AND snapshot_epoch = \(snapshot.epoch) AND snapshot_seq = \(snapshot.sequence) AND chunk = \(index)
                """, logger: logger
            ).collect()
            return try rows.first.map { try $0.decode(Data.self) }
        }
        guard let data else {
            throw ActorStorageError.corrupt(actor: "\(id)", detail: "chunk \(index) of \(snapshot) is missing")
        }
        return [UInt8](data)
    }

    public func readJournal(_ id: GPUActorID, after sequence: Int64, limit: Int) async throws -> [JournalEntry] {
        let cluster = cluster, logger = store.logger
        let limit = max(0, limit)
        return try await store.passingThroughConnection("read the journal of \(id)") { connection in
            let rows = try await connection.query(
                """
                SELECT seq, call_id, bytes FROM gb_actor_journal
                WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key) AND seq > \(sequence)
                ORDER BY seq LIMIT \(limit)
                """, logger: logger
            ).collect()
            return try rows.map { row in
                let (seq, call, bytes) = try row.decode((Int64, String?, Data).self)
                return JournalEntry(sequence: seq, callID: call, bytes: [UInt8](bytes))
            }
        }
    }

    public func append(_ entries: [JournalEntry], to id: GPUActorID, epoch: Int64) async throws {
        guard !entries.isEmpty else { return }
        try await committer.submit(Append(id: id, epoch: epoch, entries: entries))
    }

    /// Batches and appends committed so far by the group committer (and the largest batch).
    public var groupCommitStatistics: (batches: Int, items: Int, largest: Int) { committer.statistics }

    /// One transaction for every waiting append; each append in a savepoint of its own.
    static func commit(_ items: [Append], store: PostgresStore, cluster: String) async -> [Result<Void, any Error>] {
        let logger = store.logger
        do {
            return try await store.passingThroughTransaction("journal append (group commit of \(items.count))") {
                connection in
                var results: [Result<Void, any Error>] = []
                for item in items {
                    try await connection.query("SAVEPOINT gb_append", logger: logger)
                    do {
                        let head = try await fence(
                            connection, cluster, item.id, epoch: item.epoch, "journal append", logger)
                        let last = try await connection.query(
                            """
                            SELECT MAX(seq) FROM gb_actor_journal
                            WHERE cluster = \(cluster) AND actor_type = \(item.id.type) AND actor_key = \(item.id.key)
                            """, logger: logger
                        ).collect().first?.decode(Int64?.self)
                        try JournalEntry.checkConsecutive(
                            item.entries, after: last ?? head?.id.sequence ?? 0, actor: item.id)
                        for entry in item.entries {
                            let bytes = Data(entry.bytes)
                            try await connection.query(
                                """
                                INSERT INTO gb_actor_journal (cluster, actor_type, actor_key, seq, epoch, call_id, bytes)
                                VALUES (\(cluster), \(item.id.type), \(item.id.key), \(entry.sequence), \(item.epoch),
                                        \(entry.callID), \(bytes))
                                """, logger: logger)
                        }
                        try await connection.query("RELEASE SAVEPOINT gb_append", logger: logger)
                        results.append(.success(()))
                    } catch {
                        try await connection.query("ROLLBACK TO SAVEPOINT gb_append", logger: logger)
                        results.append(
                            .failure(
                                error is ActorStorageError
                                    ? error
                                    : PostgresStore.failure("journal append to \(item.id)", error)))
                    }
                }
                return (results, commit: true)
            }
        } catch {
            return items.map { _ in .failure(error) }
        }
    }

    public func writeChunk(_ bytes: [UInt8], of id: GPUActorID, snapshot: SnapshotID, index: Int, epoch: Int64)
        async throws
    {
        try SnapshotChunkLimit.check(bytes.count, index: index, of: id)
        let cluster = cluster, logger = store.logger
        let data = Data(bytes)
        try await store.passingThroughTransaction("write chunk \(index) of \(snapshot) of \(id)") { connection in
            _ = try await Self.fence(connection, cluster, id, epoch: epoch, "snapshot chunk write", logger)
            try await connection.query(
                """
                INSERT INTO gb_actor_chunk (cluster, actor_type, actor_key, snapshot_epoch, snapshot_seq, chunk, bytes)
                VALUES (\(cluster), \(id.type), \(id.key), \(snapshot.epoch), \(snapshot.sequence), \(index), \(data))
                ON CONFLICT (cluster, actor_type, actor_key, snapshot_epoch, snapshot_seq, chunk)
                DO UPDATE SET bytes = excluded.bytes
                """, logger: logger)
            return ((), commit: true)
        }
    }

    public func commitSnapshot(_ head: SnapshotHead, of id: GPUActorID, epoch: Int64) async throws {
        let cluster = cluster, logger = store.logger
        let calls = try PostgresStore.json(head.recentCallIDs, "recent call ids of \(id)")
        try await store.passingThroughTransaction("commit \(head.id) of \(id)") { connection in
            _ = try await Self.fence(connection, cluster, id, epoch: epoch, "snapshot commit", logger)
            let written =
                try await connection.query(
                    """
                    SELECT COUNT(*)::bigint FROM gb_actor_chunk
                    WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                      AND snapshot_epoch = \(head.id.epoch) AND snapshot_seq = \(head.id.sequence) AND chunk < \(head.chunks)
                    """, logger: logger
                ).collect().first?.decode(Int64.self) ?? 0
            guard written == Int64(head.chunks) else {
                throw ActorStorageError.corrupt(
                    actor: "\(id)", detail: "\(head.id) commits \(head.chunks) chunks, \(written) were written")
            }
            try await connection.query(
                """
                UPDATE gb_actor_head SET snapshot_epoch = \(head.id.epoch), snapshot_seq = \(head.id.sequence),
                  chunk_count = \(head.chunks), byte_count = \(head.bytes), recent_calls = \(calls)::jsonb, updated_at = now()
                WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                """, logger: logger)
            try await connection.query(
                """
                DELETE FROM gb_actor_journal
                WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key) AND seq <= \(head.id.sequence)
                """, logger: logger)
            try await connection.query(
                """
                DELETE FROM gb_actor_chunk
                WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                  AND NOT (snapshot_epoch = \(head.id.epoch) AND snapshot_seq = \(head.id.sequence) AND chunk < \(head.chunks))
                """, logger: logger)
            return ((), commit: true)
        }
    }

    public func delete(_ id: GPUActorID) async throws {
        let cluster = cluster, logger = store.logger
        try await store.passingThroughTransaction("delete \(id)") { connection in
            try await connection.query(
                """
                INSERT INTO gb_actor_head (cluster, actor_type, actor_key, epoch, updated_at)
                VALUES (\(cluster), \(id.type), \(id.key), 1, now())
                ON CONFLICT (cluster, actor_type, actor_key)
                DO UPDATE SET epoch = gb_actor_head.epoch + 1, snapshot_epoch = NULL, snapshot_seq = NULL,
                  chunk_count = NULL, byte_count = NULL, recent_calls = NULL, updated_at = now()
                """, logger: logger)
            try await connection.query(
                """
                DELETE FROM gb_actor_journal WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                """, logger: logger)
            try await connection.query(
                """
                DELETE FROM gb_actor_chunk WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                """, logger: logger)
            return ((), commit: true)
        }
    }

    public func status(of id: GPUActorID) async throws -> ActorStorageStatus {
        let cluster = cluster, logger = store.logger
        return try await store.passingThroughConnection("status of \(id)") { connection in
            let heads = try await connection.query(
                """
                SELECT epoch, snapshot_epoch, snapshot_seq, chunk_count, byte_count, recent_calls::text FROM gb_actor_head
                WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                """, logger: logger
            ).collect()
            let found = try heads.first.map { try Self.head($0.decode(HeadRow.self), id) }
            let journal = try await connection.query(
                """
                SELECT COUNT(*)::bigint, COALESCE(SUM(length(bytes)), 0)::bigint, MAX(seq) FROM gb_actor_journal
                WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                """, logger: logger
            ).collect()
            var (count, bytes, last): (Int64, Int64, Int64?) = (0, 0, nil)
            if let row = journal.first { (count, bytes, last) = try row.decode((Int64, Int64, Int64?).self) }
            return ActorStorageStatus(
                epoch: found?.epoch ?? 0, snapshot: found?.head, journalEntries: Int(count),
                journalBytes: bytes, lastSequence: last ?? found?.head?.id.sequence ?? 0)
        }
    }
}
