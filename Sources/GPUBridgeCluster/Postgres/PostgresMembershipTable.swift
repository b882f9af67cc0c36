import Foundation
import GPUBridge
import GPUBridgeActors
import Logging
import PostgresNIO

/// The membership table in PostgreSQL (tables `gb_membership` and `gb_membership_version`, see `PostgresStore`).
///
/// The server's clock judges every lease: renewals write `lease_until = now() + lease`, and `expireLeases` writes Dead
/// every row with `lease_until <= now()`, so no node's clock matters. Status changes are a transaction that bumps the
/// cluster's version row with a compare-and-swap (`UPDATE ... SET version = version + 1 WHERE version = expected`),
/// then inserts or conditionally updates the node's row; when either touches no row the transaction is rolled back and
/// the call returns false. Concurrent writers from one snapshot are serialized on the version row's lock, so exactly
/// one of them succeeds. A renewal locks its row (`FOR UPDATE`), so a renewal and an expiry of the same row are
/// serialized too: a lease is extended only while it has not ended, and a row written Dead stays Dead.
///
/// Owned by the node or tool that made it; safe from any task. Each call is one transaction on one pooled connection.
public final class PostgresMembershipTable: MembershipTable {
    public let store: PostgresStore
    /// The cluster name the rows are keyed by.
    public let cluster: String

    public init(store: PostgresStore, cluster: String) {
        self.store = store
        self.cluster = cluster
    }

    private typealias Row = (String, Int, Int64, String, Int64, Int64, Int64, Bool, String, String, Int64)

    /// Every row (ordered by host, port, generation), the version and the server's `now()`, read in one REPEATABLE READ
    /// transaction.
    public func readAll() async throws(GPUBridgeError) -> MembershipSnapshot {
        let cluster = cluster
        let logger = store.logger
        let (rows, version, now) = try await store.transaction(
            "read membership of \(cluster)", begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        ) { connection in
            let head = try await connection.query(
                """
                SELECT (SELECT version FROM gb_membership_version WHERE cluster = \(cluster)),
                       (extract(epoch FROM now()) * 1000000)::int8
                """, logger: logger
            ).collect()
            guard let first = head.first else {
                throw GPUBridgeError.backendFailure(
                    backend: "postgresql", call: "read membership of \(cluster)", code: -1,
                    message: "SELECT now() returned no row")
            }
            let (version, now) = try first.decode((Int64?, Int64).self)
            let rows = try await connection.query(
                """
                SELECT host, port, generation, status,
                       (extract(epoch FROM i_am_alive) * 1000000)::int8,
                       (extract(epoch FROM start_time) * 1000000)::int8,
                       (extract(epoch FROM lease_until) * 1000000)::int8,
                       left_gracefully, capacity::text, labels::text, etag
                FROM gb_membership WHERE cluster = \(cluster)
                ORDER BY host COLLATE "C", port, generation
                """, logger: logger
            ).collect()
            var decoded: [Row] = []
            for row in rows { decoded.append(try row.decode(Row.self)) }
            return ((decoded, version ?? 0, now), commit: true)
        }
        var entries: [VersionedEntry] = []
        for (host, port, generation, statusText, alive, start, lease, left, capacity, labels, etag) in rows {
            let node = NodeID(host: host, port: port, generation: generation)
            guard let status = NodeStatus(rawValue: statusText) else {
                throw .backendFailure(
                    backend: "postgresql", call: "decode gb_membership row of \(node)", code: -1,
                    message: "unknown status \"\(statusText)\"")
            }
            let entry = MembershipEntry(
                node: node, status: status,
                iAmAlive: PostgresStore.date(microseconds: alive), startTime: PostgresStore.date(microseconds: start),
                leaseExpires: PostgresStore.date(microseconds: lease), leftGracefully: left,
                capacity: try PostgresStore.decode(NodeCapacity.self, capacity, "capacity of \(node)"),
                labels: try PostgresStore.decode([String: String].self, labels, "labels of \(node)"))
            entries.append(VersionedEntry(entry: entry, etag: etag))
        }
        return MembershipSnapshot(entries: entries, version: version, now: PostgresStore.date(microseconds: now))
    }

    /// Bumps the version from `expectedVersion` (a missing version row counts as 0) and inserts the row with etag 1,
    /// its times `now()` and its lease ending `lease` later; false, changing nothing, when the version moved or the
    /// node already has a row.
    public func insert(
        _ entry: MembershipEntry, lease: Duration, expectedVersion: Int64
    ) async throws(GPUBridgeError) -> Bool {
        try MembershipLimits.check(lease: lease)
        let cluster = cluster
        let logger = store.logger
        let node = entry.node
        let capacity = try PostgresStore.json(entry.capacity, "capacity")
        let labels = try PostgresStore.json(entry.labels, "labels")
        let leaseMicroseconds = lease.microseconds
        let status = entry.status.rawValue
        let left = entry.leftGracefully
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
                                           lease_until, left_gracefully, capacity, labels, etag)
                VALUES (\(cluster), \(node.host), \(node.port), \(node.generation), \(status), now(), now(),
                        now() + \(leaseMicroseconds) * interval '1 microsecond', \(left),
                        CAST(\(capacity) AS jsonb), CAST(\(labels) AS jsonb), 1)
                ON CONFLICT (cluster, host, port, generation) DO NOTHING
                RETURNING etag
                """, logger: logger
            ).collect()
            return inserted.isEmpty ? (false, commit: false) : (true, commit: true)
        }
    }

    /// Bumps the version from `expectedVersion` and replaces the row's status, capacity, labels and `left_gracefully`
    /// if its etag is still `etag` and it is not Dead (the etag becomes `etag + 1`); false, changing nothing,
    /// otherwise.
    public func update(
        _ entry: MembershipEntry, etag: Int64,
        expectedVersion: Int64
    ) async throws(GPUBridgeError) -> Bool {
        let cluster = cluster
        let logger = store.logger
        let node = entry.node
        let capacity = try PostgresStore.json(entry.capacity, "capacity")
        let labels = try PostgresStore.json(entry.labels, "labels")
        let status = entry.status.rawValue
        let left = entry.leftGracefully
        return try await store.transaction("update membership row of \(node)") { connection in
            guard try await Self.bumpVersion(connection, cluster, expectedVersion, logger) else {
                return (false, commit: false)
            }
            let updated = try await connection.query(
                """
                UPDATE gb_membership SET status = \(status), left_gracefully = \(left),
                  capacity = CAST(\(capacity) AS jsonb), labels = CAST(\(labels) AS jsonb), etag = etag + 1
                WHERE cluster = \(cluster) AND host = \(node.host) AND port = \(node.port)
                  AND generation = \(node.generation) AND etag = \(etag) AND status <> 'Dead'
                RETURNING etag
                """, logger: logger
            ).collect()
            return updated.isEmpty ? (false, commit: false) : (true, commit: true)
        }
    }

    /// Locks the row; extends its lease to `now() + lease` if it is not Dead and the lease has not ended, else writes
    /// it Dead (bumping the version) and returns `.lost`.
    public func renewLease(
        _ node: NodeID, lease: Duration, capacity: NodeCapacity
    ) async throws(GPUBridgeError) -> LeaseRenewal {
        try MembershipLimits.check(lease: lease)
        let cluster = cluster
        let logger = store.logger
        let capacityJSON = try PostgresStore.json(capacity, "capacity")
        let leaseMicroseconds = lease.microseconds
        return try await store.transaction("renew the lease of \(node)") { connection in
            let rows = try await connection.query(
                """
                SELECT status, lease_until > now(),
                       (extract(epoch FROM lease_until) * 1000000)::int8, (extract(epoch FROM now()) * 1000000)::int8
                FROM gb_membership
                WHERE cluster = \(cluster) AND host = \(node.host) AND port = \(node.port)
                  AND generation = \(node.generation)
                FOR UPDATE
                """, logger: logger
            ).collect()
            guard let row = rows.first else {
                return (.lost(reason: "node \(node) has no membership row"), commit: false)
            }
            let (status, live, until, now) = try row.decode((String, Bool, Int64, Int64).self)
            if status == NodeStatus.dead.rawValue { return (.lost(reason: "node \(node) is Dead"), commit: false) }
            guard live else {
                try await connection.query(
                    """
                    UPDATE gb_membership SET status = 'Dead', etag = etag + 1
                    WHERE cluster = \(cluster) AND host = \(node.host) AND port = \(node.port)
                      AND generation = \(node.generation)
                    """, logger: logger)
                try await connection.query(
                    "UPDATE gb_membership_version SET version = version + 1 WHERE cluster = \(cluster)", logger: logger)
                let reason =
                    "the lease of node \(node) ended at \(PostgresStore.date(microseconds: until)), before the "
                    + "renewal at \(PostgresStore.date(microseconds: now)) (server clock)"
                return (.lost(reason: reason), commit: true)
            }
            let renewed = try await connection.query(
                """
                UPDATE gb_membership SET i_am_alive = now(),
                  lease_until = now() + \(leaseMicroseconds) * interval '1 microsecond',
                  capacity = CAST(\(capacityJSON) AS jsonb)
                WHERE cluster = \(cluster) AND host = \(node.host) AND port = \(node.port)
                  AND generation = \(node.generation)
                RETURNING (extract(epoch FROM lease_until) * 1000000)::int8, (extract(epoch FROM now()) * 1000000)::int8
                """, logger: logger
            ).collect()
            guard let first = renewed.first else {
                return (.lost(reason: "node \(node)'s row disappeared during the renewal"), commit: false)
            }
            let (expires, at) = try first.decode((Int64, Int64).self)
            return (
                .renewed(expires: PostgresStore.date(microseconds: expires), now: PostgresStore.date(microseconds: at)),
                commit: true
            )
        }
    }

    /// Writes Dead every row whose `lease_until <= now()`, bumping the version once when there are any.
    public func expireLeases() async throws(GPUBridgeError) -> [NodeID] {
        let cluster = cluster
        let logger = store.logger
        return try await store.transaction("expire leases of \(cluster)") { connection in
            let rows = try await connection.query(
                """
                UPDATE gb_membership SET status = 'Dead', etag = etag + 1
                WHERE cluster = \(cluster) AND status <> 'Dead' AND lease_until <= now()
                RETURNING host, port, generation
                """, logger: logger
            ).collect()
            var nodes: [NodeID] = []
            for row in rows {
                let (host, port, generation) = try row.decode((String, Int, Int64).self)
                nodes.append(NodeID(host: host, port: port, generation: generation))
            }
            guard !nodes.isEmpty else { return ([], commit: false) }
            try await connection.query(
                "UPDATE gb_membership_version SET version = version + 1 WHERE cluster = \(cluster)", logger: logger)
            return (nodes.sorted(), commit: true)
        }
    }

    /// Deletes the Dead rows whose lease ended more than `age` ago, and any directory rows still naming them.
    public func removeDead(olderThan age: Duration) async throws(GPUBridgeError) -> [NodeID] {
        try MembershipLimits.check(age: age)
        let cluster = cluster
        let logger = store.logger
        let ageMicroseconds = age.microseconds
        return try await store.transaction("remove old Dead rows of \(cluster)") { connection in
            let rows = try await connection.query(
                """
                DELETE FROM gb_membership
                WHERE cluster = \(cluster) AND status = 'Dead'
                  AND lease_until < now() - \(ageMicroseconds) * interval '1 microsecond'
                RETURNING host, port, generation
                """, logger: logger
            ).collect()
            var nodes: [NodeID] = []
            for row in rows {
                let (host, port, generation) = try row.decode((String, Int, Int64).self)
                nodes.append(NodeID(host: host, port: port, generation: generation))
                try await connection.query(
                    """
                    DELETE FROM gb_directory
                    WHERE cluster = \(cluster) AND host = \(host) AND port = \(port) AND generation = \(generation)
                    """, logger: logger)
            }
            return (nodes.sorted(), commit: true)
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
