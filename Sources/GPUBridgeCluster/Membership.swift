import Foundation
import GPUBridge
import GPUBridgeActors
import Synchronization

/// A node of the cluster: where it listens and when it started (its generation). A restarted process at the same
/// address is a new node (Orleans' silo address: endpoint + generation).
public struct NodeID: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// The node's start time in microseconds since 1970; distinguishes a restart at the same address.
    public var generation: Int64

    public init(host: String, port: Int, generation: Int64) {
        self.host = host
        self.port = port
        self.generation = generation
    }

    public var description: String { "\(host):\(port)@\(generation)" }

    public static func < (a: NodeID, b: NodeID) -> Bool {
        (a.host, a.port, a.generation) < (b.host, b.port, b.generation)
    }

    /// Parses `host:port@generation`.
    public init(parsing text: String) throws(GPUBridgeError) {
        let parts = text.split(separator: "@", maxSplits: 1)
        guard parts.count == 2, let generation = Int64(parts[1]), let colon = parts[0].lastIndex(of: ":"),
            let port = Int(parts[0][parts[0].index(after: colon)...]), (1...65_535).contains(port)
        else {
            throw .invalidArgument(name: "node", value: "\"\(text)\"", limit: "host:port@generation")
        }
        self.init(host: String(parts[0][..<colon]), port: port, generation: generation)
    }
}

/// Where a node is in its life (Orleans' silo status).
public enum NodeStatus: String, Sendable, Hashable, Codable, CaseIterable {
    /// The row exists; the node is starting and hosts no actors yet.
    case joining = "Joining"
    /// The node hosts actors and answers probes.
    case active = "Active"
    /// The node is deactivating its actors; it takes no new activations.
    case shuttingDown = "ShuttingDown"
    /// The node stopped, or enough members voted it dead; a dead node never comes back (a restart is a new generation).
    case dead = "Dead"
}

/// What a node tells the cluster about its devices, for placement.
public struct NodeCapacity: Sendable, Hashable, Codable {
    public struct DeviceSummary: Sendable, Hashable, Codable {
        public var id: String
        public var backend: String
        public var name: String
        public var totalMemory: Int
        /// Device memory not reserved by this node's pools.
        public var freeMemory: Int

        public init(id: String, backend: String, name: String, totalMemory: Int, freeMemory: Int) {
            self.id = id
            self.backend = backend
            self.name = name
            self.totalMemory = totalMemory
            self.freeMemory = freeMemory
        }
    }

    public var devices: [DeviceSummary]
    /// Virtual actors active on the node now (deactivated, idle ones are not counted: they hold no device memory).
    public var activations: Int
    /// Calls the node is running now.
    public var callsInFlight: Int

    public init(devices: [DeviceSummary] = [], activations: Int = 0, callsInFlight: Int = 0) {
        self.devices = devices
        self.activations = activations
        self.callsInFlight = callsInFlight
    }

    /// Devices other than the CPU backend.
    public var acceleratorCount: Int { devices.filter { $0.backend != "cpu" }.count }
    public var freeMemory: Int { devices.reduce(0) { $0 + $1.freeMemory } }
}

/// One suspicion vote: `voter` could not reach the suspect at `time`.
public struct SuspicionVote: Sendable, Hashable, Codable {
    public var voter: NodeID
    public var time: Date

    public init(voter: NodeID, time: Date) {
        self.voter = voter
        self.time = time
    }
}

/// One row of the membership table.
public struct MembershipEntry: Sendable, Hashable, Codable {
    public var node: NodeID
    public var status: NodeStatus
    /// Last time the node said it is alive (its own periodic write).
    public var iAmAlive: Date
    public var startTime: Date
    public var suspicions: [SuspicionVote]
    public var capacity: NodeCapacity
    /// Free-form labels (host name, version).
    public var labels: [String: String]

    public init(
        node: NodeID, status: NodeStatus, iAmAlive: Date, startTime: Date, suspicions: [SuspicionVote] = [],
        capacity: NodeCapacity = NodeCapacity(), labels: [String: String] = [:]
    ) {
        self.node = node
        self.status = status
        self.iAmAlive = iAmAlive
        self.startTime = startTime
        self.suspicions = suspicions
        self.capacity = capacity
        self.labels = labels
    }
}

/// A row as read, with the tag a conditional update must present.
public struct VersionedEntry: Sendable, Hashable {
    public var entry: MembershipEntry
    /// Changes on every write of the row (Orleans' ETag).
    public var etag: Int64

    public init(entry: MembershipEntry, etag: Int64) {
        self.entry = entry
        self.etag = etag
    }
}

/// The whole table as read in one consistent snapshot.
public struct MembershipSnapshot: Sendable, Hashable {
    public var entries: [VersionedEntry]
    /// The table version: bumped, atomically with the row, by every insert and update (not by `IAmAlive` writes).
    public var version: Int64

    public init(entries: [VersionedEntry], version: Int64) {
        self.entries = entries
        self.version = version
    }

    public func entry(of node: NodeID) -> VersionedEntry? { entries.first { $0.entry.node == node } }
    public var active: [MembershipEntry] { entries.map(\.entry).filter { $0.status == .active } }
}

/// Orleans' membership table: one row per node plus a version row. Every membership change is a compare-and-swap on
/// the version (and on the row's etag for updates), so two nodes that read the same snapshot cannot both change it.
///
/// Implementations: `PostgresMembershipTable` (a real server, for clusters) and `InMemoryMembershipTable` (one
/// process: a single node, or several nodes in tests).
public protocol MembershipTable: Sendable {
    /// Every row and the version, read together.
    func readAll() async throws -> MembershipSnapshot
    /// Inserts `entry` if no row for its node exists and the version is still `expectedVersion`; bumps the version.
    /// Returns false (changing nothing) when either condition fails.
    func insert(_ entry: MembershipEntry, expectedVersion: Int64) async throws -> Bool
    /// Replaces the row of `entry.node` if its etag is still `etag` and the version is still `expectedVersion`; bumps
    /// both. Returns false (changing nothing) otherwise.
    func update(_ entry: MembershipEntry, etag: Int64, expectedVersion: Int64) async throws -> Bool
    /// Writes the node's IAmAlive time and capacity (no version change, as in Orleans).
    func updateIAmAlive(_ node: NodeID, at time: Date, capacity: NodeCapacity) async throws
    /// Deletes every row and resets the version (tests and tools only).
    func reset() async throws
}

/// The membership table in process memory.
public final class InMemoryMembershipTable: MembershipTable {
    private struct State {
        var rows: [NodeID: VersionedEntry] = [:]
        var version: Int64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func readAll() async throws -> MembershipSnapshot {
        state.withLock { s in
            MembershipSnapshot(entries: s.rows.values.sorted { $0.entry.node < $1.entry.node }, version: s.version)
        }
    }

    public func insert(_ entry: MembershipEntry, expectedVersion: Int64) async throws -> Bool {
        state.withLock { s in
            guard s.version == expectedVersion, s.rows[entry.node] == nil else { return false }
            s.rows[entry.node] = VersionedEntry(entry: entry, etag: 1)
            s.version += 1
            return true
        }
    }

    public func update(_ entry: MembershipEntry, etag: Int64, expectedVersion: Int64) async throws -> Bool {
        state.withLock { s in
            guard s.version == expectedVersion, let row = s.rows[entry.node], row.etag == etag else { return false }
            s.rows[entry.node] = VersionedEntry(entry: entry, etag: etag + 1)
            s.version += 1
            return true
        }
    }

    public func updateIAmAlive(_ node: NodeID, at time: Date, capacity: NodeCapacity) async throws {
        state.withLock { s in
            s.rows[node]?.entry.iAmAlive = time
            s.rows[node]?.entry.capacity = capacity
        }
    }

    public func reset() async throws {
        state.withLock { $0 = State() }
    }
}
