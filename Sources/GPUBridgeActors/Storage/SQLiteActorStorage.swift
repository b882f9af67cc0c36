import Foundation
import GPUBridge
import GRDB

/// Actor state in a SQLite database file (through GRDB): the embedded default.
///
/// Schema (migration `v2`; `v1`'s whole-snapshot table `actor_state` is converted into one-chunk snapshots):
/// ```sql
/// CREATE TABLE actor_head (            -- one row per actor ever claimed
///   actor_type TEXT NOT NULL, actor_key TEXT NOT NULL,
///   epoch INTEGER NOT NULL,            -- raised by each claim; appends and snapshot commits must carry it
///   snapshot_epoch INTEGER, snapshot_seq INTEGER,   -- the current snapshot's id (NULL: none)
///   chunk_count INTEGER, byte_count INTEGER,
///   recent_calls BLOB,                 -- JSON array of call ids remembered at the snapshot
///   updated_at DOUBLE NOT NULL,        -- seconds since 1970 (UTC) of the last claim or commit
///   PRIMARY KEY (actor_type, actor_key));
/// CREATE TABLE actor_chunk (
///   actor_type TEXT NOT NULL, actor_key TEXT NOT NULL, snapshot_epoch INTEGER NOT NULL, snapshot_seq INTEGER NOT NULL,
///   chunk INTEGER NOT NULL, bytes BLOB NOT NULL,
///   PRIMARY KEY (actor_type, actor_key, snapshot_epoch, snapshot_seq, chunk));
/// CREATE TABLE actor_journal (
///   actor_type TEXT NOT NULL, actor_key TEXT NOT NULL, seq INTEGER NOT NULL,
///   epoch INTEGER NOT NULL,            -- the epoch that appended it
///   call_id TEXT,                      -- the call that made it, when the call carried an id
///   bytes BLOB NOT NULL,
///   PRIMARY KEY (actor_type, actor_key, seq));
/// ```
/// The database runs in WAL mode with `synchronous = FULL` by default, so a committed append survives a crash of the
/// process or of the machine (`Sync.normal` trades the machine for speed: see there). Appends are group-committed (`GroupCommitter`): concurrent appends of any actors share one write
/// transaction (one `fsync`), each in its own savepoint so a fenced actor's entries do not fail the others. Snapshot
/// chunks are separate rows (at most `maxChunkBytes` each, well under SQLite's 1 GB blob limit), so a snapshot has no
/// size limit but the disk's. Readers are never blocked by a writer (WAL).
///
/// Owned by whoever opened it; any task may call it. Costs: a claim or commit is one write transaction; an append
/// shares one; reads take a pooled reader connection.
public final class SQLiteActorStorage: ActorStorage {
    /// The database file.
    public let path: String
    private let pool: DatabasePool
    private let committer: GroupCommitter<Append>
    /// The largest chunk `writeChunk` accepts (SQLite's default largest blob is 1 000 000 000 bytes).
    public static let maxChunkBytes = SnapshotChunkLimit.maxBytes

    struct Append: Sendable {
        var id: GPUActorID
        var epoch: Int64
        var entries: [JournalEntry]
    }

    /// When a commit reaches the disk (SQLite's `synchronous` setting in WAL mode).
    public enum Sync: String, Sendable, Hashable {
        /// `FULL`: every commit is synced to the disk before it returns. A committed append survives a crash of the
        /// process, of the operating system and a power cut.
        case full = "FULL"
        /// `NORMAL`: commits are written to the WAL file without a sync; the WAL is synced at checkpoints. A committed
        /// append survives a crash of the process (kill -9), not of the operating system or the power.
        case normal = "NORMAL"
    }

    /// How commits reach the disk.
    public let sync: Sync

    /// Opens (creating if needed) the database at `path` and migrates its schema.
    public init(path: String, sync: Sync = .full) throws(GPUBridgeError) {
        guard !path.isEmpty else { throw .invalidArgument(name: "path", value: "\"\"", limit: "a database file path") }
        self.path = path
        self.sync = sync
        do {
            var config = Configuration()
            // The WAL is copied into the database file every 16 384 pages (64 MiB) rather than SQLite's 1 000 (4 MiB):
            // journal entries are large, and each copy ends in a sync (`gpubridge bench durability`: about 1.6x the
            // journaled upserts with 16 in flight). A crash leaves at most that much WAL to read back at the next open.
            let pragma = "PRAGMA synchronous = \(sync.rawValue); PRAGMA wal_autocheckpoint = 16384"
            config.prepareDatabase { db in try db.execute(sql: pragma) }
            let pool = try DatabasePool(path: path, configuration: config)
            try Self.migrator.migrate(pool)
            self.pool = pool
        } catch {
            throw Self.ioFailure(path: path, operation: "open", error)
        }
        let pool = pool, path = path
        committer = GroupCommitter { items in await Self.commit(items, pool: pool, path: path) }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE actor_state (
                      actor_type TEXT NOT NULL, actor_key TEXT NOT NULL, version INTEGER NOT NULL,
                      updated_at DOUBLE NOT NULL, bytes BLOB NOT NULL,
                      PRIMARY KEY (actor_type, actor_key)
                    ) WITHOUT ROWID
                    """)
        }
        migrator.registerMigration("v2") { db in
            try db.execute(
                sql: """
                    CREATE TABLE actor_head (
                      actor_type TEXT NOT NULL, actor_key TEXT NOT NULL, epoch INTEGER NOT NULL,
                      snapshot_epoch INTEGER, snapshot_seq INTEGER, chunk_count INTEGER, byte_count INTEGER,
                      recent_calls BLOB, updated_at DOUBLE NOT NULL,
                      PRIMARY KEY (actor_type, actor_key));
                    CREATE TABLE actor_chunk (
                      actor_type TEXT NOT NULL, actor_key TEXT NOT NULL, snapshot_epoch INTEGER NOT NULL,
                      snapshot_seq INTEGER NOT NULL, chunk INTEGER NOT NULL, bytes BLOB NOT NULL,
                      PRIMARY KEY (actor_type, actor_key, snapshot_epoch, snapshot_seq, chunk));
                    CREATE TABLE actor_journal (
                      actor_type TEXT NOT NULL, actor_key TEXT NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL,
                      call_id TEXT, bytes BLOB NOT NULL,
                      PRIMARY KEY (actor_type, actor_key, seq));
                    INSERT INTO actor_head (actor_type, actor_key, epoch, snapshot_epoch, snapshot_seq, chunk_count,
                                            byte_count, recent_calls, updated_at)
                      SELECT actor_type, actor_key, 0, 0, 0, 1, length(bytes), NULL, updated_at FROM actor_state;
                    INSERT INTO actor_chunk (actor_type, actor_key, snapshot_epoch, snapshot_seq, chunk, bytes)
                      SELECT actor_type, actor_key, 0, 0, 0, bytes FROM actor_state;
                    DROP TABLE actor_state;
                    """)
        }
        migrator.registerMigration("v3") { db in
            // The highest fencing token that claimed each actor (see `ActorStorage.claim(_:token:)`).
            try db.execute(sql: "ALTER TABLE actor_head ADD COLUMN token INTEGER NOT NULL DEFAULT 0")
        }
        return migrator
    }

    static func failure(path: String, operation: String, _ error: any Error) -> any Error {
        if error is ActorStorageError || error is GPUBridgeError { return error }
        return ioFailure(path: path, operation: operation, error)
    }

    static func ioFailure(path: String, operation: String, _ error: any Error) -> GPUBridgeError {
        if let db = error as? DatabaseError {
            return GPUBridgeError.io(
                path: path, operation: "SQLite \(operation)", errno: db.extendedResultCode.rawValue,
                message: db.message ?? "\(db)")
        }
        return GPUBridgeError.io(path: path, operation: "SQLite \(operation)", errno: -1, message: "\(error)")
    }

    private func write<T: Sendable>(_ operation: String, _ body: @escaping @Sendable (Database) throws -> T)
        async throws -> T
    {
        do { return try await pool.write(body) } catch { throw Self.failure(path: path, operation: operation, error) }
    }

    private func read<T: Sendable>(_ operation: String, _ body: @escaping @Sendable (Database) throws -> T) async throws
        -> T
    {
        do { return try await pool.read(body) } catch { throw Self.failure(path: path, operation: operation, error) }
    }

    // MARK: Rows

    private static func head(_ db: Database, _ id: GPUActorID) throws -> (epoch: Int64, head: SnapshotHead?)? {
        guard
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT epoch, snapshot_epoch, snapshot_seq, chunk_count, byte_count, recent_calls FROM actor_head
                    WHERE actor_type = ? AND actor_key = ?
                    """, arguments: [id.type, id.key])
        else { return nil }
        let epoch: Int64 = row[0]
        guard let snapshotEpoch: Int64 = row[1], let sequence: Int64 = row[2], let chunks: Int = row[3],
            let bytes: Int64 = row[4]
        else { return (epoch, nil) }
        let calls: Data? = row[5]
        let recent = try calls.map { try decodeCalls($0, id) } ?? []
        return (
            epoch,
            SnapshotHead(
                id: SnapshotID(epoch: snapshotEpoch, sequence: sequence), chunks: chunks,
                bytes: bytes, recentCallIDs: recent)
        )
    }

    static func decodeCalls(_ data: Data, _ id: GPUActorID) throws -> [String] {
        do { return try JSONDecoder().decode([String].self, from: data) } catch {
            throw ActorStorageError.corrupt(actor: "\(id)", detail: "recent call ids of the snapshot head: \(error)")
        }
    }

    private static func fence(_ db: Database, _ id: GPUActorID, epoch: Int64, _ operation: String) throws
        -> SnapshotHead?
    {
        let found = try head(db, id)
        guard let found, found.epoch == epoch else {
            throw ActorStorageError.fenced(
                actor: "\(id)", operation: operation, epoch: epoch, current: found?.epoch ?? 0)
        }
        return found.head
    }

    private static func lastSequence(_ db: Database, _ id: GPUActorID, head: SnapshotHead?) throws -> Int64 {
        let last = try Int64.fetchOne(
            db, sql: "SELECT MAX(seq) FROM actor_journal WHERE actor_type = ? AND actor_key = ?",
            arguments: [id.type, id.key])
        return last ?? head?.id.sequence ?? 0
    }

    // MARK: ActorStorage

    public func claim(_ id: GPUActorID, token: Int64?) async throws -> ActorClaim {
        let now = Date().timeIntervalSince1970
        return try await write("claim \(id)") { db in
            if let token {
                let stored =
                    try Int64.fetchOne(
                        db, sql: "SELECT token FROM actor_head WHERE actor_type = ? AND actor_key = ?",
                        arguments: [id.type, id.key]) ?? 0
                guard token >= stored else {
                    throw ActorStorageError.fenced(
                        actor: "\(id)", operation: "claim with token \(token)", epoch: token, current: stored)
                }
            }
            try db.execute(
                sql: """
                    INSERT INTO actor_head (actor_type, actor_key, epoch, updated_at) VALUES (?, ?, 1, ?)
                    ON CONFLICT (actor_type, actor_key) DO UPDATE SET epoch = epoch + 1, updated_at = excluded.updated_at
                    """, arguments: [id.type, id.key, now])
            if let token {
                try db.execute(
                    sql: "UPDATE actor_head SET token = ? WHERE actor_type = ? AND actor_key = ?",
                    arguments: [token, id.type, id.key])
            }
            let found = try Self.head(db, id)!
            return ActorClaim(epoch: found.epoch, snapshot: found.head)
        }
    }

    public func readChunk(_ id: GPUActorID, snapshot: SnapshotID, index: Int) async throws -> [UInt8] {
        let data = try await read("read chunk \(index) of \(snapshot) of \(id)") { db in
            try Data.fetchOne(
                db,
                sql: """
                    SELECT bytes FROM actor_chunk WHERE actor_type = ? AND actor_key = ? AND snapshot_epoch = ?
                      AND snapshot_seq = ? AND chunk = ?
                    """, arguments: [id.type, id.key, snapshot.epoch, snapshot.sequence, index])
        }
        guard let data else {
            throw ActorStorageError.corrupt(actor: "\(id)", detail: "chunk \(index) of \(snapshot) is missing")
        }
        return [UInt8](data)
    }

    public func readJournal(_ id: GPUActorID, after sequence: Int64, limit: Int) async throws -> [JournalEntry] {
        try await read("read the journal of \(id)") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT seq, call_id, bytes FROM actor_journal WHERE actor_type = ? AND actor_key = ? AND seq > ?
                    ORDER BY seq LIMIT ?
                    """, arguments: [id.type, id.key, sequence, max(0, limit)]
            ).map { row in
                let data: Data = row[2]
                return JournalEntry(sequence: row[0], callID: row[1], bytes: [UInt8](data))
            }
        }
    }

    public func append(_ entries: [JournalEntry], to id: GPUActorID, epoch: Int64) async throws {
        guard !entries.isEmpty else { return }
        try await committer.submit(Append(id: id, epoch: epoch, entries: entries))
    }

    /// Batches and appends committed so far by the group committer (and the largest batch).
    public var groupCommitStatistics: (batches: Int, items: Int, largest: Int) { committer.statistics }

    /// One write transaction for every waiting append; each append in a savepoint of its own.
    static func commit(_ items: [Append], pool: DatabasePool, path: String) async -> [Result<Void, any Error>] {
        do {
            return try await pool.write { db in
                items.map { item in
                    Result {
                        try db.inSavepoint {
                            let head = try fence(db, item.id, epoch: item.epoch, "journal append")
                            let last = try lastSequence(db, item.id, head: head)
                            try JournalEntry.checkConsecutive(item.entries, after: last, actor: item.id)
                            for entry in item.entries {
                                try db.execute(
                                    sql: """
                                        INSERT INTO actor_journal (actor_type, actor_key, seq, epoch, call_id, bytes)
                                        VALUES (?, ?, ?, ?, ?, ?)
                                        """,
                                    arguments: [
                                        item.id.type, item.id.key, entry.sequence, item.epoch,
                                        entry.callID, Data(entry.bytes),
                                    ])
                            }
                            return .commit
                        }
                    }.mapError { failure(path: path, operation: "journal append to \(item.id)", $0) }
                }
            }
        } catch {
            let failed = failure(path: path, operation: "journal append (group commit of \(items.count))", error)
            return items.map { _ in .failure(failed) }
        }
    }

    public func writeChunk(_ bytes: [UInt8], of id: GPUActorID, snapshot: SnapshotID, index: Int, epoch: Int64)
        async throws
    {
        try SnapshotChunkLimit.check(bytes.count, index: index, of: id)
        let data = Data(bytes)
        try await write("write chunk \(index) of \(snapshot) of \(id)") { db in
            _ = try Self.fence(db, id, epoch: epoch, "snapshot chunk write")
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO actor_chunk (actor_type, actor_key, snapshot_epoch, snapshot_seq, chunk, bytes)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [id.type, id.key, snapshot.epoch, snapshot.sequence, index, data])
        }
    }

    public func commitSnapshot(_ head: SnapshotHead, of id: GPUActorID, epoch: Int64) async throws {
        let calls = try JSONEncoder().encode(head.recentCallIDs)
        let now = Date().timeIntervalSince1970
        try await write("commit \(head.id) of \(id)") { db in
            _ = try Self.fence(db, id, epoch: epoch, "snapshot commit")
            let written =
                try Int.fetchOne(
                    db,
                    sql: """
                        SELECT COUNT(*) FROM actor_chunk WHERE actor_type = ? AND actor_key = ? AND snapshot_epoch = ?
                          AND snapshot_seq = ? AND chunk < ?
                        """, arguments: [id.type, id.key, head.id.epoch, head.id.sequence, head.chunks]) ?? 0
            guard written == head.chunks else {
                throw ActorStorageError.corrupt(
                    actor: "\(id)", detail: "\(head.id) commits \(head.chunks) chunks, \(written) were written")
            }
            try db.execute(
                sql: """
                    UPDATE actor_head SET snapshot_epoch = ?, snapshot_seq = ?, chunk_count = ?, byte_count = ?,
                      recent_calls = ?, updated_at = ?
                    WHERE actor_type = ? AND actor_key = ?
                    """,
                arguments: [head.id.epoch, head.id.sequence, head.chunks, head.bytes, calls, now, id.type, id.key])
            try db.execute(
                sql: "DELETE FROM actor_journal WHERE actor_type = ? AND actor_key = ? AND seq <= ?",
                arguments: [id.type, id.key, head.id.sequence])
            try db.execute(
                sql: """
                    DELETE FROM actor_chunk WHERE actor_type = ? AND actor_key = ?
                      AND NOT (snapshot_epoch = ? AND snapshot_seq = ? AND chunk < ?)
                    """, arguments: [id.type, id.key, head.id.epoch, head.id.sequence, head.chunks])
        }
    }

    public func delete(_ id: GPUActorID) async throws {
        let now = Date().timeIntervalSince1970
        try await write("delete \(id)") { db in
            try db.execute(
                sql: "DELETE FROM actor_journal WHERE actor_type = ? AND actor_key = ?", arguments: [id.type, id.key])
            try db.execute(
                sql: "DELETE FROM actor_chunk WHERE actor_type = ? AND actor_key = ?", arguments: [id.type, id.key])
            try db.execute(
                sql: """
                    INSERT INTO actor_head (actor_type, actor_key, epoch, updated_at) VALUES (?, ?, 1, ?)
                    ON CONFLICT (actor_type, actor_key) DO UPDATE SET epoch = epoch + 1, snapshot_epoch = NULL,
                      snapshot_seq = NULL, chunk_count = NULL, byte_count = NULL, recent_calls = NULL,
                      updated_at = excluded.updated_at
                    """, arguments: [id.type, id.key, now])
        }
    }

    public func status(of id: GPUActorID) async throws -> ActorStorageStatus {
        try await read("status of \(id)") { db in
            let found = try Self.head(db, id)
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*), COALESCE(SUM(length(bytes)), 0), MAX(seq) FROM actor_journal
                    WHERE actor_type = ? AND actor_key = ?
                    """, arguments: [id.type, id.key])
            let count: Int = row?[0] ?? 0
            let bytes: Int64 = row?[1] ?? 0
            let last: Int64? = row?[2]
            return ActorStorageStatus(
                epoch: found?.epoch ?? 0, snapshot: found?.head, journalEntries: count,
                journalBytes: bytes, lastSequence: last ?? found?.head?.id.sequence ?? 0)
        }
    }
}
