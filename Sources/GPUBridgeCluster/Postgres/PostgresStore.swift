import Foundation
import GPUBridge
import GPUBridgeActors
import Logging
import NIOSSL
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
/// Connections are made over TCP, with TLS as the URL's `sslmode` says (libpq's meanings: `prefer` by default, which
/// encrypts when the server offers it; `verify-full` with `sslrootcert` to check the server's certificate).
/// Authentication is whatever the server asks for (trust, password, SCRAM) with the URL's credentials.
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
///   i_am_alive TIMESTAMPTZ NOT NULL,   -- the last lease renewal (the server's now())
///   start_time TIMESTAMPTZ NOT NULL,
///   lease_until TIMESTAMPTZ NOT NULL,  -- the node is dead once now() passes this
///   left_gracefully BOOLEAN NOT NULL,  -- Dead written by the node itself at the end of a graceful stop
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
    public static let urlForm =
        "postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require|verify-ca|verify-full"
        + "[&sslrootcert=FILE]]"

    /// The server's host name or address.
    public let host: String
    /// The server's TCP port (5432 when the URL names none).
    public let port: Int
    public let username: String
    public let database: String
    /// How connections use TLS (the URL's `sslmode`, libpq's meaning; `prefer` when it names none).
    public let tls: DatabaseTLS
    /// The postgres-nio connection pool (for queries this store does not wrap).
    public let client: PostgresClient
    let logger: Logger
    /// Set when `run()` starts.
    let started = Atomic<Bool>(false)

    /// Parses `url` (`postgres://user[:password]@host[:port]/database`, or `postgresql://`; user, password and
    /// database may be percent-encoded; an IPv6 host is written in brackets) and creates the pool. Connects nothing:
    /// connections are made by `run()` when queries need them.
    ///
    /// `sessionTimeout` bounds, on the server, how long a statement waits for a lock (`lock_timeout`) and how long a
    /// session may sit idle inside a transaction (`idle_in_transaction_session_timeout`): a process paused or cut off
    /// in the middle of a transaction then loses it (and its locks) after that time instead of stalling every other
    /// writer of the rows it locked. A cluster node passes its `databaseTimeout`. From 1 ms to 1 hour.
    public init(
        url: String, logger: Logger = Logger(label: "gpubridge.postgres"), sessionTimeout: Duration = .seconds(5)
    ) throws(GPUBridgeError) {
        guard sessionTimeout >= .milliseconds(1), sessionTimeout <= .seconds(3_600) else {
            throw .invalidArgument(name: "sessionTimeout", value: "\(sessionTimeout)", limit: "1 ms...1 hour")
        }
        let parsed = try Self.parse(url: url)
        host = parsed.host
        port = parsed.port
        username = parsed.user
        database = parsed.database
        tls = parsed.tls
        self.logger = logger
        var configuration = PostgresClient.Configuration(
            host: parsed.host, port: parsed.port, username: parsed.user,
            password: parsed.password, database: parsed.database,
            tls: try Self.clientTLS(parsed.tls))
        configuration.options.connectTimeout = .seconds(10)
        let milliseconds =
            "\(sessionTimeout.components.seconds * 1_000 + sessionTimeout.components.attoseconds / 1_000_000_000_000_000)"
        configuration.options.additionalStartupParameters = [
            ("lock_timeout", milliseconds), ("idle_in_transaction_session_timeout", milliseconds),
        ]
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
    }

    /// The parts of a database URL.
    struct ParsedURL: Equatable {
        var user: String
        var password: String?
        var host: String
        var port: Int
        var database: String
        var tls: DatabaseTLS = .prefer
    }

    /// postgres-nio's TLS setting for `tls`: `prefer` and `require` encrypt without checking the server's certificate
    /// (as libpq does); `verify-ca` checks its chain, `verify-full` its chain and its host name, against `sslrootcert`
    /// or the system's roots.
    static func clientTLS(_ tls: DatabaseTLS) throws(GPUBridgeError) -> PostgresClient.Configuration.TLS {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch tls {
        case .disable:
            return .disable
        case .prefer:
            configuration.certificateVerification = .none
            return .prefer(configuration)
        case .require:
            configuration.certificateVerification = .none
            return .require(configuration)
        case let .verifyCA(root), let .verifyFull(root):
            if case .verifyCA = tls {
                configuration.certificateVerification = .noHostnameVerification
            } else {
                configuration.certificateVerification = .fullVerification
            }
            if let root {
                guard FileManager.default.isReadableFile(atPath: root) else {
                    throw .invalidArgument(name: "sslrootcert", value: root, limit: "a readable PEM file")
                }
                configuration.trustRoots = .file(root)
            }
            return .require(configuration)
        }
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
        var tls = DatabaseTLS.prefer
        var pathPart = path
        if let question = path.firstIndex(of: "?") {
            pathPart = path[..<question]
            var mode = "prefer"
            var root: String?
            for pair in path[path.index(after: question)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let value = parts[1].removingPercentEncoding else {
                    throw bad("bad query parameter \(pair)")
                }
                switch parts[0] {
                case "sslmode": mode = value
                case "sslrootcert": root = value
                default: throw bad("unknown query parameter \(parts[0]); known: sslmode, sslrootcert")
                }
            }
            switch mode {
            case "disable": tls = .disable
            case "prefer": tls = .prefer
            case "require": tls = .require
            case "verify-ca": tls = .verifyCA(rootCertificate: root)
            case "verify-full": tls = .verifyFull(rootCertificate: root)
            default: throw bad("sslmode \(mode) is not disable, prefer, require, verify-ca or verify-full")
            }
            if root != nil, !mode.hasPrefix("verify") {
                throw bad("sslrootcert needs sslmode=verify-ca or verify-full")
            }
        }
        guard !pathPart.contains("#") else { throw bad("fragments are not supported") }
        guard !pathPart.isEmpty, !pathPart.contains("/"), let database = pathPart.removingPercentEncoding,
            !database.isEmpty
        else {
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
        return ParsedURL(user: user, password: password, host: String(host), port: port, database: database, tls: tls)
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
            // Migrations wait for each other (the advisory lock) longer than the session's lock_timeout allows.
            try await connection.query("SET LOCAL lock_timeout = '120s'", logger: logger)
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
              lease_until TIMESTAMPTZ NOT NULL,
              left_gracefully BOOLEAN NOT NULL DEFAULT false,
              capacity JSONB NOT NULL,
              labels JSONB NOT NULL,
              etag BIGINT NOT NULL,
              PRIMARY KEY (cluster, host, port, generation)
            )
            """,
            // Tables made before leases: add the lease columns, drop the suspicion votes they replace. Each ALTER runs
            // only when needed: even a no-op ALTER TABLE takes an exclusive lock, which would queue every query of the
            // running cluster behind it.
            """
            DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                             WHERE table_schema = current_schema() AND table_name = 'gb_membership'
                               AND column_name = 'lease_until') THEN
                ALTER TABLE gb_membership ADD COLUMN lease_until TIMESTAMPTZ NOT NULL DEFAULT 'epoch';
                ALTER TABLE gb_membership ADD COLUMN left_gracefully BOOLEAN NOT NULL DEFAULT false;
              END IF;
              IF EXISTS (SELECT 1 FROM information_schema.columns
                         WHERE table_schema = current_schema() AND table_name = 'gb_membership'
                           AND column_name = 'suspicions') THEN
                ALTER TABLE gb_membership DROP COLUMN suspicions;
              END IF;
            END $$
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

    /// Opens a store on `url`, runs its pool in a child task, migrates the schema (unless `migrate` is false: a
    /// client with a read-only role cannot), runs `body` and stops the pool.
    public static func withStore<R: Sendable>(
        url: String, logger: Logger = Logger(label: "gpubridge.postgres"), migrate: Bool = true,
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
            if migrate { try await store.migrate() }
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

/// How a `PostgresStore` connects: TLS modes named as libpq's `sslmode`. A value; any thread.
public enum DatabaseTLS: Sendable, Hashable {
    /// Plain TCP.
    case disable
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    case prefer
    /// TLS or no connection; the certificate is not checked.
    case require
    /// TLS; the certificate must chain to `rootCertificate` (a PEM file) or the system's roots.
    case verifyCA(rootCertificate: String?)
    /// TLS; the certificate must chain to the roots and name the host.
    case verifyFull(rootCertificate: String?)
}
