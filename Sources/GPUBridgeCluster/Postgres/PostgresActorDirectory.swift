import Foundation
import GPUBridge
import GPUBridgeActors
import Logging
import PostgresNIO

/// The actor directory in PostgreSQL (table `gb_directory`, see `PostgresStore`). Owned by the node or tool that made
/// it; safe from any task; each call is one statement on one pooled connection.
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

    /// Registers an activation of `id` on `node` unless one is registered; returns the registered one. A new row is
    /// written only while `node`'s membership row is Active with a lease that has not ended (`now()`), checked under a
    /// share lock on that row in the same statement, so no registration lands on a node whose lease is being expired;
    /// otherwise `ClusterError.noActiveNodes` names the node.
    public func register(_ id: GPUActorID, on node: NodeID) async throws -> ActorAddress {
        let cluster = cluster
        let logger = store.logger
        // The insert and the read of the existing row are one statement. When a concurrent registration commits the
        // row after this statement's snapshot was taken, the insert does nothing and the read does not see the row
        // either: the statement is then repeated (a new snapshot sees it). A few rounds are plenty.
        for _ in 0..<8 {
            let found = try await store.withConnection("register \(id) on \(node)") { connection in
                let rows = try await connection.query(
                    """
                    WITH live AS (
                      SELECT 1 FROM gb_membership
                      WHERE cluster = \(cluster) AND host = \(node.host) AND port = \(node.port)
                        AND generation = \(node.generation) AND status = 'Active' AND lease_until > now()
                      FOR SHARE
                    ), inserted AS (
                      INSERT INTO gb_directory (cluster, actor_type, actor_key, host, port, generation, activation,
                                                registered_at)
                      SELECT \(cluster), \(id.type), \(id.key), \(node.host), \(node.port), \(node.generation),
                             nextval('gb_activation_seq'), now()
                      FROM live
                      ON CONFLICT (cluster, actor_type, actor_key) DO NOTHING
                      RETURNING host, port, generation, activation
                    )
                    SELECT host, port, generation, activation, true FROM inserted
                    UNION ALL
                    SELECT host, port, generation, activation, true FROM gb_directory
                    WHERE cluster = \(cluster) AND actor_type = \(id.type) AND actor_key = \(id.key)
                    UNION ALL
                    SELECT '', 0, 0, 0, false WHERE NOT EXISTS (SELECT 1 FROM live)
                    """, logger: logger
                ).collect()
                return try rows.map { try $0.decode((String, Int, Int64, Int64, Bool).self) }
            }
            if let (host, port, generation, activation, _) = found.first(where: { $0.4 }) {
                return ActorAddress(
                    id: id, node: NodeID(host: host, port: port, generation: generation),
                    activation: activation)
            }
            if found.contains(where: { !$0.4 }) {
                throw ClusterError.noActiveNodes(
                    actor: "\(id)", reason: "node \(node) holds no live lease (Active, lease not ended)")
            }
        }
        throw GPUBridgeError.backendFailure(
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
