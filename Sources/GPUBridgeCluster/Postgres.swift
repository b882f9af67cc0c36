import Foundation
import GPUBridge
import GPUBridgeActors
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// A connection pool to one PostgreSQL database: the shared store of a cluster's membership table, actor directory and
/// actor state.
///
/// The store is a postgres-nio `PostgresClient`. Its pool works only while `run()` runs: run it in a task (or put the
/// store into a ServiceLifecycle `ServiceGroup`, it is a `Service`), then call `migrate()` once before the first query.
/// `withStore(url:_:)` does all three for a scoped use (tests, tools).
///
/// Connections are made over TCP **without TLS**: the database is expected on the loopback interface or a trusted
/// network. Authentication is whatever the server asks for (trust, password, SCRAM) with the URL's credentials.
///
/// Schema (`migrate()`; every table is keyed by a `cluster` name so several clusters, or tests, can share a database):
/// ```sql
/// CREATE TABLE gb_membership_version (
///   cluster TEXT PRIMARY KEY,
///   version BIGINT NOT NULL            -- the membership table version; a missing row reads as 0
/// );
/// CREATE TABLE gb_membership (
///   cluster TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, generation BIGINT NOT NULL,
///   status TEXT NOT NULL,              -- NodeStatus raw value: Joining, Active, ShuttingDown, Dead
///   i_am_alive TIMESTAMPTZ NOT NULL, start_time TIMESTAMPTZ NOT NULL,
///   suspicions JSONB NOT NULL,         -- [SuspicionVote] (JSONEncoder: dates as seconds since 2001)
///   capacity JSONB NOT NULL,           -- NodeCapacity
///   labels JSONB NOT NULL,             -- [String: String]
///   etag BIGINT NOT NULL,              -- 1 on insert, +1 on each update
///   PRIMARY KEY (cluster, host, port, generation)
/// );
/// CREATE SEQUENCE gb_activation_seq;
/// CREATE TABLE gb_directory (
///   cluster TEXT NOT NULL, actor_type TEXT NOT NULL, actor_key TEXT NOT NULL,
///   host TEXT NOT NULL, port INTEGER NOT NULL, generation BIGINT NOT NULL,
///   activation BIGINT NOT NULL,        -- nextval('gb_activation_seq')
///   registered_at TIMESTAMPTZ NOT NULL,
///   PRIMARY KEY (cluster, actor_type, actor_key)
/// );
/// CREATE INDEX gb_directory_node ON gb_directory (cluster, host, port, generation);
/// -- actor state: see PostgresActorStorage (gb_actor_head, gb_actor_chunk, gb_actor_journal)
/// ```
/// Times are written and read as whole microseconds since 1970, so a `Date` comes back to the microsecond.
public final class PostgresStore: Sendable {
    /// The URL forms `init(url:)` accepts.
    public static let urlForm = "postgres://user[:password]@host[:port]/database"

    /// The server's host name or address.
    public let host: String
    /// The server's TCP port (5432 when the URL names none).
    public let port: Int
    public let username: String
    public let database: String
    /// The postgres-nio connection pool (for queries this store does not wrap).
    public let client: PostgresClient
    let logger: Logger
    /// Set when `run()` starts.
    let started = Atomic<Bool>(false)

    /// Parses `url` (`postgres://user[:password]@host[:port]/database`, or `postgresql://`; user, password and
    /// database may be percent-encoded; an IPv6 host is written in brackets) and creates the pool. Connects nothing:
    /// connections are made by `run()` when queries need them.
    public init(url: String, logger: Logger = Logger(label: "gpubridge.postgres")) throws(GPUBridgeError) {
        let parsed = try Self.parse(url: url)
        host = parsed.host
        port = parsed.port
        username = parsed.user
        database = parsed.database
        self.logger = logger
        var configuration = PostgresClient.Configuration(
            host: parsed.host, port: parsed.port, username: parsed.user,
            password: parsed.password, database: parsed.database,
            tls: .disable)
        configuration.options.connectTimeout = .seconds(10)
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
    }

    /// The parts of a database URL.
    struct ParsedURL: Equatable {
        var user: String
        var password: String?
        var host: String
        var port: Int
        var database: String
    }

    static func parse(url: String) throws(GPUBridgeError) -> ParsedURL {
        func bad(_ why: String) -> GPUBridgeError {
            .invalidArgument(name: "databaseURL", value: "\"\(redacted(url))\" (\(why))", limit: urlForm)
        }
        let lower = url.lowercased()
        let rest: Substring
        if lower.hasPrefix("postgres://") {
            rest = url.dropFirst("postgres://".count)
        } else if lower.hasPrefix("postgresql://") {
            rest = url.dropFirst("postgresql://".count)
        } else {
            throw bad("the scheme must be postgres:// or postgresql://")
        }
        guard let slash = rest.firstIndex(of: "/") else { throw bad("no database") }
        let authority = rest[..<slash]
        let path = rest[rest.index(after: slash)...]
        guard !path.contains("?"), !path.contains("#") else { throw bad("query parameters are not supported") }
        guard !path.isEmpty, !path.contains("/"), let database = path.removingPercentEncoding, !database.isEmpty else {
            throw bad("no database")
        }
        guard let at = authority.lastIndex(of: "@") else { throw bad("no user") }
        let userInfo = authority[..<at]
        let hostPort = authority[authority.index(after: at)...]
        let userPart: Substring
        var password: String?
        if let colon = userInfo.firstIndex(of: ":") {
            userPart = userInfo[..<colon]
            guard let decoded = userInfo[userInfo.index(after: colon)...].removingPercentEncoding else {
                throw bad("bad percent-encoding in the password")
            }
            password = decoded
        } else {
            userPart = userInfo
        }
        guard let user = userPart.removingPercentEncoding, !user.isEmpty else { throw bad("no user") }
        let host: Substring
        let portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw bad("unterminated IPv6 address") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.isEmpty {
                portText = nil
            } else if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else {
                throw bad("junk after the IPv6 address")
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = hostPort
            portText = nil
        }
        guard !host.isEmpty else { throw bad("no host") }
        var port = 5432
        if let portText {
            guard let value = Int(portText), (1...65_535).contains(value) else {
                throw bad("port \(portText.isEmpty ? "empty" : String(portText)) is outside 1...65535")
            }
            port = value
        }
        return ParsedURL(user: user, password: password, host: String(host), port: port, database: database)
    }

    /// `url` with any password replaced by `***`, for error messages and logs.
    static func redacted(_ url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@"),
            let colon = rest[..<at].firstIndex(of: ":")
        else { return url }
        return String(url[..<rest.index(after: colon)]) + "***" + String(rest[at...])
    }

    /// Runs the connection pool until the calling task is cancelled (or, inside a `ServiceGroup`, until graceful
    /// shutdown). Queries wait for a connection until this runs. A store runs once: a second call logs an error and
    /// returns at once.
    public func run() async {
        let first = started.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        guard first else {
            logger.error("PostgresStore.run() called twice; the pool is already running or has stopped")
            return
        }
        await client.run()
    }

    /// Creates the schema (above) when it is missing. Idempotent, and safe when several processes migrate at once:
    /// the statements run in one transaction holding a transaction-scoped advisory lock.
    public func migrate() async throws(GPUBridgeError) {
        try await transaction("migrate") { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: logger)
            for statement in Self.schema {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            return ((), commit: true)
        }
    }

    /// The advisory lock key `migrate()` holds ("GPUBrdg1" as an integer).
    static let migrationLock: Int64 = 0x4750_5542_7264_6731

    static let schema =
        [
            """
            CREATE TABLE IF NOT EXISTS gb_membership_version (
              cluster TEXT PRIMARY KEY,
              version BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS gb_membership (
              cluster TEXT NOT NULL,
              host TEXT NOT NULL,
              port INTEGER NOT NULL,
              generation BIGINT NOT NULL,
              status TEXT NOT NULL,
              i_am_alive TIMESTAMPTZ NOT NULL,
              start_time TIMESTAMPTZ NOT NULL,
              suspicions JSONB NOT NULL,
              capacity JSONB NOT NULL,
              labels JSONB NOT NULL,
              etag BIGINT NOT NULL,
              PRIMARY KEY (cluster, host, port, generation)
            )
            """,
            "CREATE SEQUENCE IF NOT EXISTS gb_activation_seq",
            """
            CREATE TABLE IF NOT EXISTS gb_directory (
              cluster TEXT NOT NULL,
              actor_type TEXT NOT NULL,
              actor_key TEXT NOT NULL,
              host TEXT NOT NULL,
              port INTEGER NOT NULL,
              generation BIGINT NOT NULL,
              activation BIGINT NOT NULL,
              registered_at TIMESTAMPTZ NOT NULL,
              PRIMARY KEY (cluster, actor_type, actor_key)
            )
            """,
            "CREATE INDEX IF NOT EXISTS gb_directory_node ON gb_directory (cluster, host, port, generation)",
        ] + PostgresActorStorage.schema

    /// Opens a store on `url`, runs its pool in a child task, migrates the schema, runs `body` and stops the pool.
    public static func withStore<R: Sendable>(
        url: String, logger: Logger = Logger(label: "gpubridge.postgres"),
        _ body: (PostgresStore) async throws -> R
    ) async throws -> R {
        let store = try PostgresStore(url: url, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self, returning: R.self) { group in
            group.addTask { await store.run() }
            defer { group.cancelAll() }
            // Queries would wait for the pool anyway, but postgres-nio logs a warning for each lease made before
            // run() started: wait for it (a few scheduler turns).
            while !store.started.load(ordering: .acquiring) { await Task.yield() }
            await Task.yield()
            try await store.migrate()
            return try await body(store)
        }
    }

    // MARK: Helpers for the tables

    /// The error for a failed PostgreSQL call (`String(reflecting:)`: PSQLError's description hides the server's
    /// message).
    static func failure(_ call: String, _ error: any Error) -> GPUBridgeError {
        if let bridge = error as? GPUBridgeError { return bridge }
        return .backendFailure(backend: "postgresql", call: call, code: -1, message: String(reflecting: error))
    }

    /// Runs `body` on one pooled connection.
    func withConnection<R: Sendable>(
        _ call: String,
        _ body: (PostgresConnection) async throws -> R
    ) async throws(GPUBridgeError) -> R {
        do {
            return try await client.withConnection { connection in try await body(connection) }
        } catch {
            throw Self.failure(call, error)
        }
    }

    /// Runs `body` in a transaction (`begin` starts it) on one pooled connection; commits when `body` returns
    /// `commit: true`, rolls back when it returns `commit: false` or throws.
    func transaction<R: Sendable>(
        _ call: String, begin: PostgresQuery = "BEGIN",
        _ body: (PostgresConnection) async throws -> (R, commit: Bool)
    ) async throws(GPUBridgeError) -> R {
        do {
            return try await passingThrough(call) { try await transactionBody(call, begin: begin, body) }
        } catch {
            throw Self.failure(call, error)
        }
    }

    /// `withConnection`, passing the body's own errors (an `ActorStorageError`, a `GPUBridgeError`) through as they are;
    /// PostgreSQL's become `GPUBridgeError.backendFailure` naming `call`.
    func passingThroughConnection<R: Sendable>(
        _ call: String,
        _ body: (PostgresConnection) async throws -> R
    ) async throws -> R {
        try await passingThrough(call) { try await client.withConnection { connection in try await body(connection) } }
    }

    /// `transaction`, passing the body's own errors through as they are (see `passingThroughConnection`).
    func passingThroughTransaction<R: Sendable>(
        _ call: String, _ body: (PostgresConnection) async throws -> (R, commit: Bool)
    ) async throws -> R {
        try await passingThrough(call) { try await transactionBody(call, begin: "BEGIN", body) }
    }

    private func passingThrough<R>(_ call: String, _ body: () async throws -> R) async throws -> R {
        do {
            return try await body()
        } catch let error as ActorStorageError {
            throw error
        } catch let error as GPUBridgeError {
            throw error
        } catch {
            throw Self.failure(call, error)
        }
    }

    private func transactionBody<R: Sendable>(
        _ call: String, begin: PostgresQuery, _ body: (PostgresConnection) async throws -> (R, commit: Bool)
    ) async throws -> R {
        let logger = logger
        return try await client.withConnection { connection in
            try await connection.query(begin, logger: logger)
            let result: (R, commit: Bool)
            do {
                result = try await body(connection)
            } catch {
                do {
                    try await connection.query("ROLLBACK", logger: logger)
                } catch {
                    logger.warning("PostgreSQL ROLLBACK after a failed \(call) failed: \(String(reflecting: error))")
                }
                throw error
            }
            try await connection.query(result.commit ? "COMMIT" : "ROLLBACK", logger: logger)
            return result.0
        }
    }

    /// Microseconds since 1970 (what the tables' times are written as).
    static func microseconds(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1_000_000).rounded()
        guard value.isFinite, value > -9.0e18, value < 9.0e18 else { return value < 0 ? Int64.min / 2 : Int64.max / 2 }
        return Int64(value)
    }

    static func date(microseconds: Int64) -> Date { Date(timeIntervalSince1970: Double(microseconds) / 1_000_000) }

    static func json<T: Encodable>(_ value: T, _ what: String) throws(GPUBridgeError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            throw .invalidArgument(name: what, value: String(describing: value), limit: "JSON-encodable")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String, _ what: String) throws(GPUBridgeError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw .backendFailure(
                backend: "postgresql", call: "decode \(what)", code: -1,
                message: "\(String(reflecting: error)) in \(text.prefix(200))")
        }
    }
}

extension PostgresStore: Service {}

/// The membership table in PostgreSQL (tables `gb_membership` and `gb_membership_version`, see `PostgresStore`).
///
/// Every change is a transaction: it bumps the cluster's version row with a compare-and-swap
/// (`UPDATE ... SET version = version + 1 WHERE version = expected`), then inserts or conditionally updates the node's
/// row; when either touches no row the transaction is rolled back and the call returns false. Concurrent writers from
/// one snapshot are serialized on the version row's lock, so exactly one of them succeeds.
public final class PostgresMembershipTable: MembershipTable {
    public let store: PostgresStore
    /// The cluster name the rows are keyed by.
    public let cluster: String

    public init(store: PostgresStore, cluster: String) {
        self.store = store
        self.cluster = cluster
    }

    /// Every row (ordered by host, port, generation) and the version, read in one REPEATABLE READ transaction.
    public func readAll() async throws(GPUBridgeError) -> MembershipSnapshot {
        let cluster = cluster
        let logger = store.logger
        let (rows, version) = try await store.transaction(
            "read membership of \(cluster)", begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        ) { connection in
            let versionRows = try await connection.query(
                "SELECT version FROM gb_membership_version WHERE cluster = \(cluster)", logger: logger
            ).collect()
            let version = try versionRows.first?.decode(Int64.self) ?? 0
            let rows = try await connection.query(
                """
                SELECT host, port, generation, status,
                       (extract(epoch FROM i_am_alive) * 1000000)::int8,
                       (extract(epoch FROM start_time) * 1000000)::int8,
                       suspicions::text, capacity::text, labels::text, etag
                FROM gb_membership WHERE cluster = \(cluster)
                ORDER BY host COLLATE "C", port, generation
                """, logger: logger
            ).collect()
            var decoded: [(String, Int, Int64, String, Int64, Int64, String, String, String, Int64)] = []
            for row in rows {
                decoded.append(
                    try row.decode(
                        (String, Int, Int64, String, Int64, Int64, String, String, String, Int64).self))
            }
            return ((decoded, version), commit: true)
        }
        var entries: [VersionedEntry] = []
        for (host, port, generation, statusText, alive, start, suspicions, capacity, labels, etag) in rows {
            let node = NodeID(host: host, port: port, generation: generation)
            guard let status = NodeStatus(rawValue: statusText) else {
                throw .backendFailure(
                    backend: "postgresql", call: "decode gb_membership row of \(node)", code: -1,
                    message: "unknown status \"\(statusText)\"")
            }
            let entry = MembershipEntry(
                node: node, status: status,
                iAmAlive: PostgresStore.date(microseconds: alive), startTime: PostgresStore.date(microseconds: start),
                suspicions: try PostgresStore.decode([SuspicionVote].self, suspicions, "suspicions of \(node)"),
                capacity: try PostgresStore.decode(NodeCapacity.self, capacity, "capacity of \(node)"),
                labels: try PostgresStore.decode([String: String].self, labels, "labels of \(node)"))
            entries.append(VersionedEntry(entry: entry, etag: etag))
        }
        return MembershipSnapshot(entries: entries, version: version)
    }

    /// Bumps the version from `expectedVersion` (a missing version row counts as 0) and inserts the row with etag 1;
    /// false, changing nothing, when the version moved or the node already has a row.
    public func insert(_ entry: MembershipEntry, expectedVersion: Int64) async throws(GPUBridgeError) -> Bool {
        let cluster = cluster
        let logger = store.logger
        let node = entry.node
        let suspicions = try PostgresStore.json(entry.suspicions, "suspicions")
        let capacity = try PostgresStore.json(entry.capacity, "capacity")
        let labels = try PostgresStore.json(entry.labels, "labels")
        let alive = PostgresStore.microseconds(entry.iAmAlive)
        let start = PostgresStore.microseconds(entry.startTime)
        let status = entry.status.rawValue
        return try await store.transaction("insert membership row of \(node)") { connection in
            if expectedVersion == 0 {
                try await connection.query(
                    """
                    INSERT INTO gb_membership_version (cluster, version) VALUES (\(cluster), 0)
                    ON CONFLICT (cluster) DO NOTHING
                    """, logger: logger)
            }
            guard try await Self.bumpVersion(connection, cluster, expectedVersion, logger) else {
                return (false, commit: false)
            }
            let inserted = try await connection.query(
                """
                INSERT INTO gb_membership (cluster, host, port, generation, status, i_am_alive, start_time,
                                           suspicions, capacity, labels, etag)
                VALUES (\(cluster), \(node.host), \(node.port), \(node.generation), \(status),
                        timestamptz 'epoch' + \(alive) * interval '1 microsecond',
                        timestamptz 'epoch' + \(start) * interval '1 microsecond',
                        CAST(\(suspicions) AS jsonb), CAST(\(capacity) AS jsonb), CAST(\(labels) AS jsonb), 1)
                ON CONFLICT (cluster, host, port, generation) DO NOTHING
                RETURNING etag
                """, logger: logger
            ).collect()
            return inserted.isEmpty ? (false, commit: false) : (true, commit: true)
        }
    }

    /// Bumps the version from `expectedVersion` and replaces the row if its etag is still `etag` (the etag becomes
    /// `etag + 1`); false, changing nothing, otherwise.
    public func update(
        _ entry: MembershipEntry, etag: Int64,
        expectedVersion: Int64
    ) async throws(GPUBridgeError) -> Bool {
        let cluster = cluster
        let logger = store.logger
        let node = entry.node
        let suspicions = try PostgresStore.json(entry.suspicions, "suspicions")
        let capacity = try PostgresStore.json(entry.capacity, "capacity")
        let labels = try PostgresStore.json(entry.labels, "labels")
        let alive = PostgresStore.microseconds(entry.iAmAlive)
        let start = PostgresStore.microseconds(entry.startTime)
        let status = entry.status.rawValue
        return try await store.transaction("update membership row of \(node)") { connection in
            guard try await Self.bumpVersion(connection, cluster, expectedVersion, logger) else {
                return (false, commit: false)
            }
            let updated = try await connection.query(
                """
                UPDATE gb_membership SET status = \(status),
                  i_am_alive = timestamptz 'epoch' + \(alive) * interval '1 microsecond',
                  start_time = timestamptz 'epoch' + \(start) * interval '1 microsecond',
                  suspicions = CAST(\(suspicions) AS jsonb), capacity = CAST(\(capacity) AS jsonb),
                  labels = CAST(\(labels) AS jsonb), etag = etag + 1
                WHERE cluster = \(cluster) AND host = \(node.host) AND port = \(node.port)
                  AND generation = \(node.generation) AND etag = \(etag)
                RETURNING etag
                """, logger: logger
            ).collect()
            return updated.isEmpty ? (false, commit: false) : (true, commit: true)
        }
    }

    /// The version compare-and-swap: true when the version was `expected` and is now `expected + 1`.
    private static func bumpVersion(
        _ connection: PostgresConnection, _ cluster: String, _ expected: Int64,
        _ logger: Logger
    ) async throws -> Bool {
        let rows = try await connection.query(
            """
            UPDATE gb_membership_version SET version = version + 1
            WHERE cluster = \(cluster) AND version = \(expected)
            RETURNING version
            """, logger: logger
        ).collect()
        return !rows.isEmpty
    }

    /// Writes the row's `i_am_alive` and `capacity` (no etag or version change); does nothing if the node has no row.
    public func updateIAmAlive(_ node: NodeID, at time: Date, capacity: NodeCapacity) async throws(GPUBridgeError) {
        let cluster = cluster
        let logger = store.logger
        let capacityJSON = try PostgresStore.json(capacity, "capacity")
        let alive = PostgresStore.microseconds(time)
        try await store.withConnection("update IAmAlive of \(node)") { connection in
            _ = try await connection.query(
                """
                UPDATE gb_membership SET i_am_alive = timestamptz 'epoch' + \(alive) * interval '1 microsecond',
                  capacity = CAST(\(capacityJSON) AS jsonb)
                WHERE cluster = \(cluster) AND host = \(node.host) AND port = \(node.port)
                  AND generation = \(node.generation)
                """, logger: logger)
        }
    }

    /// Deletes the cluster's rows and its version row (the version reads as 0 again).
    public func reset() async throws(GPUBridgeError) {
        let cluster = cluster
        let logger = store.logger
        try await store.transaction("reset membership of \(cluster)") { connection in
            try await connection.query("DELETE FROM gb_membership WHERE cluster = \(cluster)", logger: logger)
            try await connection.query("DELETE FROM gb_membership_version WHERE cluster = \(cluster)", logger: logger)
            return ((), commit: true)
        }
    }
}

/// The actor directory in PostgreSQL (table `gb_directory`, see `PostgresStore`).
///
/// `register` is one `INSERT ... ON CONFLICT DO NOTHING` on the primary key (cluster, actor_type, actor_key), so of
/// many concurrent registrations exactly one row is written; every caller gets that row back. Activation numbers come
/// from the sequence `gb_activation_seq` (increasing, with gaps: a losing registration also draws a number).
public final class PostgresActorDirectory: ActorDirectory {
    public let store: PostgresStore
    /// The cluster name the rows are keyed by.
    public let cluster: String

    public init(store: PostgresStore, cluster: String) {
        self.store = store
        self.cluster = cluster
    }

    /// The registered activation of `id`, if any.
    public func lookup(_ id: GPUActorID) async throws(GPUBridgeError) -> ActorAddress? {
        let cluster = cluster
        let logger = store.logger
        return try await store.withConnection("look up \(id)") { connection in
            let rows = try await connection.query(
                """
                SELECT host, port, generation, activation FROM gb_directory
                WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                """, logger: logger
            ).collect()
            guard let row = rows.first else { return nil }
            let (host, port, generation, activation) = try row.decode((String, Int, Int64, Int64).self)
            return ActorAddress(
                id: id, node: NodeID(host: host, port: port, generation: generation),
                activation: activation)
        }
    }

    /// Registers an activation of `id` on `node` unless one is registered; returns the registered one.
    public func register(_ id: GPUActorID, on node: NodeID) async throws(GPUBridgeError) -> ActorAddress {
        let cluster = cluster
        let logger = store.logger
        // The insert and the read of the existing row are one statement. When a concurrent registration commits the
        // row after this statement's snapshot was taken, the insert does nothing and the read does not see the row
        // either: the statement is then repeated (a new snapshot sees it). A few rounds are plenty.
        for _ in 0..<8 {
            let found = try await store.withConnection("register \(id) on \(node)") { connection in
                let rows = try await connection.query(
                    """
                    WITH inserted AS (
                      INSERT INTO gb_directory (cluster, actor_type, actor_key, host, port, generation, activation,
                                                registered_at)
                      VALUES (\(cluster), \(id.type), \(id.key), \(node.host), \(node.port), \(node.generation),
                              nextval('gb_activation_seq'), now())
                      ON CONFLICT (cluster, actor_type, actor_key) DO NOTHING
                      RETURNING host, port, generation, activation
                    )
                    SELECT host, port, generation, activation FROM inserted
                    UNION ALL
                    SELECT host, port, generation, activation FROM gb_directory
                    WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                    LIMIT 1
                    """, logger: logger
                ).collect()
                return try rows.first.map { try $0.decode((String, Int, Int64, Int64).self) }
            }
            if let (host, port, generation, activation) = found {
                return ActorAddress(
                    id: id, node: NodeID(host: host, port: port, generation: generation),
                    activation: activation)
            }
        }
        throw .backendFailure(
            backend: "postgresql", call: "register \(id) on \(node)", code: -1,
            message: "the directory row kept appearing and disappearing over 8 attempts")
    }

    /// Deletes the row of `address.id` if it still names `address`'s node and activation; true if it deleted it.
    @discardableResult
    public func unregister(_ address: ActorAddress) async throws(GPUBridgeError) -> Bool {
        let cluster = cluster
        let logger = store.logger
        let id = address.id
        let node = address.node
        return try await store.withConnection("unregister \(address)") { connection in
            let rows = try await connection.query(
                """
                DELETE FROM gb_directory
                WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                  AND host = \(node.host) AND port = \(node.port) AND generation = \(node.generation)
                  AND activation = \(address.activation)
                RETURNING activation
                """, logger: logger
            ).collect()
            return !rows.isEmpty
        }
    }

    /// Deletes every row on `node`; returns how many.
    @discardableResult
    public func unregisterAll(on node: NodeID) async throws(GPUBridgeError) -> Int {
        let cluster = cluster
        let logger = store.logger
        return try await store.withConnection("unregister all on \(node)") { connection in
            try await connection.query(
                """
                DELETE FROM gb_directory
                WHERE cluster = \(cluster) AND host = \(node.host) AND port = \(node.port)
                  AND generation = \(node.generation)
                RETURNING activation
                """, logger: logger
            ).collect().count
        }
    }

    /// Every registered activation, ordered by actor type and key.
    public func all() async throws(GPUBridgeError) -> [ActorAddress] {
        let cluster = cluster
        let logger = store.logger
        return try await store.withConnection("list the directory of \(cluster)") { connection in
            let rows = try await connection.query(
                """
                SELECT actor_type, actor_key, host, port, generation, activation FROM gb_directory
                WHERE cluster = \(cluster)
                ORDER BY actor_type COLLATE "C", actor_key COLLATE "C"
                """, logger: logger
            ).collect()
            var addresses: [ActorAddress] = []
            for row in rows {
                let (type, key, host, port, generation, activation) =
                    try row.decode((String, String, String, Int, Int64, Int64).self)
                addresses.append(
                    ActorAddress(
                        id: GPUActorID(type: type, key: key),
                        node: NodeID(host: host, port: port, generation: generation),
                        activation: activation))
            }
            return addresses
        }
    }
}
