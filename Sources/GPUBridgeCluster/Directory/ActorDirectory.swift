import Foundation
import GPUBridge
import GPUBridgeActors
import Synchronization

/// Where one activation of an actor lives: the actor's id (type, key), its node and the activation's number. Every
/// call carries it, so a node can refuse a call meant for an activation it does not hold. A value; any thread.
public struct ActorAddress: Sendable, Hashable, Codable, CustomStringConvertible {
    public var id: GPUActorID
    public var node: NodeID
    /// Unique per registration in the directory; a reactivation elsewhere gets a new number.
    public var activation: Int64

    public init(id: GPUActorID, node: NodeID, activation: Int64) {
        self.id = id
        self.node = node
        self.activation = activation
    }

    public var description: String { "\(id)@\(node)#\(activation)" }
}

/// The cluster's actor directory: at most one registered activation per actor id.
///
/// The single-activation guarantee is the directory's: `register` is atomic (a unique key on (type, key) in
/// PostgreSQL, a lock in memory), so of many nodes registering the same id at once exactly one wins and all of them
/// get the winner's address back. An entry whose node died is replaced with `unregister` (compare-and-delete on the
/// activation number) followed by `register`. This is Orleans' pluggable grain directory (as its ADO.NET / Redis
/// directories) rather than its in-cluster DHT: the data lives in the same store as membership and state. Owned by
/// the node or tool that made it; safe from any task; each call is one statement (or one lock in memory).
public protocol ActorDirectory: Sendable {
    /// The registered activation of `id`, if any.
    func lookup(_ id: GPUActorID) async throws -> ActorAddress?
    /// Registers an activation of `id` on `node` unless one is registered; returns the registered one (new or not).
    /// A new registration is made only for a node whose membership row is Active with a lease that has not ended, by
    /// the membership table's clock; otherwise it throws `ClusterError.noActiveNodes` naming the node. The activation
    /// number is the activation's fencing token: numbers only grow, so a later activation always holds a higher one.
    func register(_ id: GPUActorID, on node: NodeID) async throws -> ActorAddress
    /// Removes `address` if it is still the registered activation of its id; true if it removed it.
    @discardableResult
    func unregister(_ address: ActorAddress) async throws -> Bool
    /// Removes every activation registered on `node`; returns how many.
    @discardableResult
    func unregisterAll(on node: NodeID) async throws -> Int
    /// Every registered activation (tools and tests).
    func all() async throws -> [ActorAddress]
}

/// The directory in process memory (one node, or several nodes of one process in tests). Given the membership table
/// the nodes use, it registers only on nodes with a live lease, as the PostgreSQL directory does; without one (a
/// single node with no membership) it registers anywhere. Safe from any task; every call takes one lock.
public final class InMemoryActorDirectory: ActorDirectory {
    private struct State {
        var entries: [GPUActorID: ActorAddress] = [:]
        var next: Int64 = 0
    }

    private let state = Mutex(State())
    private let membership: InMemoryMembershipTable?

    public init(membership: InMemoryMembershipTable? = nil) { self.membership = membership }

    public func lookup(_ id: GPUActorID) async throws -> ActorAddress? { state.withLock { $0.entries[id] } }

    public func register(_ id: GPUActorID, on node: NodeID) async throws -> ActorAddress {
        try state.withLock { s throws(ClusterError) in
            if let existing = s.entries[id] { return existing }
            if let membership, !membership.holdsActiveLease(node) {
                throw .noActiveNodes(
                    actor: "\(id)", reason: "node \(node) holds no live lease (Active, lease not ended)")
            }
            s.next += 1
            let address = ActorAddress(id: id, node: node, activation: s.next)
            s.entries[id] = address
            return address
        }
    }

    public func unregister(_ address: ActorAddress) async throws -> Bool {
        state.withLock { s in
            guard s.entries[address.id] == address else { return false }
            s.entries[address.id] = nil
            return true
        }
    }

    public func unregisterAll(on node: NodeID) async throws -> Int {
        state.withLock { s in
            let gone = s.entries.filter { $0.value.node == node }.map(\.key)
            for id in gone { s.entries[id] = nil }
            return gone.count
        }
    }

    public func all() async throws -> [ActorAddress] {
        state.withLock { s in s.entries.values.sorted { ($0.id.type, $0.id.key) < ($1.id.type, $1.id.key) } }
    }
}
