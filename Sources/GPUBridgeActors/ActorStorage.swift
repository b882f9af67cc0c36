import Foundation
import GPUBridge
import GRDB
import Synchronization

/// Where actors keep their snapshots: opaque bytes by (actor type, key).
///
/// An activation loads its snapshot (nil: a new actor) and a deactivation saves one; `delete` forgets an actor.
/// Implementations must be safe to call from any task.
public protocol ActorStorage: Sendable {
    func save(type: String, key: String, bytes: [UInt8]) async throws(GPUBridgeError)
    func load(type: String, key: String) async throws(GPUBridgeError) -> [UInt8]?
    func delete(type: String, key: String) async throws(GPUBridgeError)
}

/// Snapshots in process memory (tests; state is lost with the process). Counts saves and loads.
public final class InMemoryActorStorage: ActorStorage {
    private struct State {
        var entries: [GPUActorID: [UInt8]] = [:]
        var saves = 0
        var loads = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func save(type: String, key: String, bytes: [UInt8]) async throws(GPUBridgeError) {
        state.withLock { s in
            s.entries[GPUActorID(type: type, key: key)] = bytes
            s.saves += 1
        }
    }

    public func load(type: String, key: String) async throws(GPUBridgeError) -> [UInt8]? {
        state.withLock { s in
            s.loads += 1
            return s.entries[GPUActorID(type: type, key: key)]
        }
    }

    public func delete(type: String, key: String) async throws(GPUBridgeError) {
        _ = state.withLock { $0.entries.removeValue(forKey: GPUActorID(type: type, key: key)) }
    }

    /// Snapshots saved and loaded so far.
    public var saves: Int { state.withLock { $0.saves } }
    public var loads: Int { state.withLock { $0.loads } }
}

/// Snapshots in a SQLite database file (through GRDB): the embedded default.
///
/// Schema (migration `v1`):
/// ```sql
/// CREATE TABLE actor_state (
///   actor_type TEXT NOT NULL,
///   actor_key  TEXT NOT NULL,
///   version    INTEGER NOT NULL,   -- 1 on the first save, +1 on each save after
///   updated_at DOUBLE NOT NULL,    -- seconds since 1970 (UTC) of the last save
///   bytes      BLOB NOT NULL,
///   PRIMARY KEY (actor_type, actor_key)
/// ) WITHOUT ROWID
/// ```
/// A save is one transaction (insert or replace, version bumped), so a snapshot is either the old one or the new one.
/// The database uses WAL journaling, so loads are not blocked by a save. SQLite's largest blob is 1 000 000 000 bytes
/// by default; a larger snapshot is refused with an error naming that limit.
public final class SQLiteActorStorage: ActorStorage {
    /// The database file.
    public let path: String
    private let pool: DatabasePool
    /// SQLite's default `SQLITE_MAX_LENGTH`.
    public static let maxSnapshotBytes = 1_000_000_000

    /// Opens (creating if needed) the database at `path` and migrates its schema.
    public init(path: String) throws(GPUBridgeError) {
        guard !path.isEmpty else { throw .invalidArgument(name: "path", value: "\"\"", limit: "a database file path") }
        self.path = path
        do {
            pool = try DatabasePool(path: path)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.execute(sql: """
                    CREATE TABLE actor_state (
                      actor_type TEXT NOT NULL,
                      actor_key TEXT NOT NULL,
                      version INTEGER NOT NULL,
                      updated_at DOUBLE NOT NULL,
                      bytes BLOB NOT NULL,
                      PRIMARY KEY (actor_type, actor_key)
                    ) WITHOUT ROWID
                    """)
            }
            try migrator.migrate(pool)
        } catch {
            throw Self.failure(path: path, operation: "open", error)
        }
    }

    static func failure(path: String, operation: String, _ error: any Error) -> GPUBridgeError {
        if let db = error as? DatabaseError {
            return .io(path: path, operation: "SQLite \(operation)", errno: db.extendedResultCode.rawValue,
                       message: db.message ?? "\(db)")
        }
        return .io(path: path, operation: "SQLite \(operation)", errno: -1, message: "\(error)")
    }

    public func save(type: String, key: String, bytes: [UInt8]) async throws(GPUBridgeError) {
        guard bytes.count <= Self.maxSnapshotBytes else {
            throw .invalidArgument(name: "snapshot of \(type)/\(key)", value: "\(bytes.count) bytes",
                                   limit: "at most \(Self.maxSnapshotBytes) bytes (SQLite's largest blob)")
        }
        let blob = Data(bytes)
        let now = Date().timeIntervalSince1970
        do {
            try await pool.write { db in
                try db.execute(sql: """
                    INSERT INTO actor_state (actor_type, actor_key, version, updated_at, bytes) VALUES (?, ?, 1, ?, ?)
                    ON CONFLICT (actor_type, actor_key)
                    DO UPDATE SET version = version + 1, updated_at = excluded.updated_at, bytes = excluded.bytes
                    """, arguments: [type, key, now, blob])
            }
        } catch {
            throw Self.failure(path: path, operation: "save \(type)/\(key)", error)
        }
    }

    public func load(type: String, key: String) async throws(GPUBridgeError) -> [UInt8]? {
        do {
            let blob = try await pool.read { db in
                try Data.fetchOne(db, sql: "SELECT bytes FROM actor_state WHERE actor_type = ? AND actor_key = ?",
                                  arguments: [type, key])
            }
            return blob.map { [UInt8]($0) }
        } catch {
            throw Self.failure(path: path, operation: "load \(type)/\(key)", error)
        }
    }

    public func delete(type: String, key: String) async throws(GPUBridgeError) {
        do {
            try await pool.write { db in
                try db.execute(sql: "DELETE FROM actor_state WHERE actor_type = ? AND actor_key = ?", arguments: [type, key])
            }
        } catch {
            throw Self.failure(path: path, operation: "delete \(type)/\(key)", error)
        }
    }

    /// The saved version of (type, key): 0 if none.
    public func version(type: String, key: String) async throws(GPUBridgeError) -> Int {
        do {
            return try await pool.read { db in
                try Int.fetchOne(db, sql: "SELECT version FROM actor_state WHERE actor_type = ? AND actor_key = ?",
                                 arguments: [type, key]) ?? 0
            }
        } catch {
            throw Self.failure(path: path, operation: "read version of \(type)/\(key)", error)
        }
    }
}
