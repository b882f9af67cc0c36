import Foundation
import GPUBridge

/// One row of the membership table. Times are the table's clock (PostgreSQL's `now()`), never a node's.
/// A value; any thread.
public struct MembershipEntry: Sendable, Hashable, Codable {
    public var node: NodeID
    public var status: NodeStatus
    /// When the node last renewed its lease.
    public var iAmAlive: Date
    public var startTime: Date
    /// When the node's lease ends unless renewed: past this instant (by the table's clock) the node is dead, whatever
    /// its status says, and `expireLeases` writes it Dead.
    public var leaseExpires: Date
    /// True on a row the node itself wrote Dead at the end of a graceful stop (it drained its calls and saved and
    /// unregistered its activations first); false on a row whose lease ran out.
    public var leftGracefully: Bool
    public var capacity: NodeCapacity
    /// Free-form labels (host name, version).
    public var labels: [String: String]

    public init(
        node: NodeID, status: NodeStatus, iAmAlive: Date, startTime: Date, leaseExpires: Date? = nil,
        leftGracefully: Bool = false, capacity: NodeCapacity = NodeCapacity(), labels: [String: String] = [:]
    ) {
        self.node = node
        self.status = status
        self.iAmAlive = iAmAlive
        self.startTime = startTime
        self.leaseExpires = leaseExpires ?? iAmAlive
        self.leftGracefully = leftGracefully
        self.capacity = capacity
        self.labels = labels
    }

    /// Whether the node is a member at table time `now`: not Dead and its lease not ended.
    public func isLive(at now: Date) -> Bool { status != .dead && leaseExpires > now }
}

/// A row as read, with the tag a conditional update must present. A value; any thread.
public struct VersionedEntry: Sendable, Hashable {
    public var entry: MembershipEntry
    /// Changes on every write of the row except lease renewals (Orleans' ETag).
    public var etag: Int64

    public init(entry: MembershipEntry, etag: Int64) {
        self.entry = entry
        self.etag = etag
    }
}

/// The whole table as read in one consistent snapshot, with the table's clock at that read. A value; any thread.
public struct MembershipSnapshot: Sendable, Hashable {
    public var entries: [VersionedEntry]
    /// The table version: bumped, atomically with the row, by every insert, status change and expiry (not by lease
    /// renewals).
    public var version: Int64
    /// The table's clock when the snapshot was read.
    public var now: Date

    public init(entries: [VersionedEntry], version: Int64, now: Date = Date(timeIntervalSince1970: 0)) {
        self.entries = entries
        self.version = version
        self.now = now
    }

    public func entry(of node: NodeID) -> VersionedEntry? { entries.first { $0.entry.node == node } }
    /// Rows that are Active with a lease that has not ended: where new activations may go.
    public var active: [MembershipEntry] {
        entries.map(\.entry).filter { $0.status == .active && $0.leaseExpires > now }
    }
    /// Rows that are not Dead and whose lease has not ended.
    public var live: [MembershipEntry] { entries.map(\.entry).filter { $0.isLive(at: now) } }
}

/// What `MembershipTable.renewLease` found. A value; any thread.
public enum LeaseRenewal: Sendable, Hashable {
    /// The lease now ends at `expires` (table time `now` + the lease duration).
    case renewed(expires: Date, now: Date)
    /// The node is no member any more: its row is Dead, missing, or its lease had ended before this renewal (the row
    /// is then written Dead). A node that gets this must stop at once.
    case lost(reason: String)
}

/// The membership table: one row per node, a version, and the table's own clock, which is the one judge of whether a
/// node lives. Each node holds a **lease** on its row, renewed every membership round; a node whose lease ended (by
/// the table's clock) is dead whatever anyone thinks, and a Dead row never changes again. Status changes are a
/// compare-and-swap on the version (and on the row's etag), so two nodes that read the same snapshot cannot both
/// change it.
///
/// Implementations: `PostgresMembershipTable` (a real server, for clusters; its clock is the server's `now()`) and
/// `InMemoryMembershipTable` (one process: a single node, or several nodes in tests). Owned by the node or tool that
/// made it; every method is safe from any task; each is one transaction (or one lock in memory). Durations are checked:
/// a lease must be more than zero and at most a day, an age zero or more, else `invalidArgument` names it.
public protocol MembershipTable: Sendable {
    /// Every row, the version and the table's clock, read together.
    func readAll() async throws -> MembershipSnapshot
    /// Inserts `entry` if no row for its node exists and the version is still `expectedVersion`; bumps the version.
    /// The row's IAmAlive and start times are the table's clock and its lease ends `lease` later (the entry's own
    /// times are ignored). Returns false (changing nothing) when either condition fails.
    func insert(_ entry: MembershipEntry, lease: Duration, expectedVersion: Int64) async throws -> Bool
    /// Replaces the status, capacity, labels and `leftGracefully` of `entry.node`'s row if its etag is still `etag`,
    /// the version is still `expectedVersion` and the row is not Dead; bumps both. Times and the lease are left alone.
    /// Returns false (changing nothing) otherwise.
    func update(_ entry: MembershipEntry, etag: Int64, expectedVersion: Int64) async throws -> Bool
    /// Extends `node`'s lease to the table's clock + `lease` and records its capacity, if the row is not Dead and its
    /// lease has not ended; otherwise writes the row Dead (when it is not already) and returns `.lost`.
    func renewLease(_ node: NodeID, lease: Duration, capacity: NodeCapacity) async throws -> LeaseRenewal
    /// Writes Dead every row that is not Dead and whose lease ended by the table's clock, bumping the version once;
    /// returns those nodes. Idempotent: any member may call it every round.
    func expireLeases() async throws -> [NodeID]
    /// Deletes the Dead rows whose lease ended more than `age` ago; returns them.
    func removeDead(olderThan age: Duration) async throws -> [NodeID]
    /// Deletes every row and resets the version (tests and tools only).
    func reset() async throws
}

/// The duration checks every `MembershipTable` applies before it touches anything.
enum MembershipLimits {
    /// A lease: more than zero, at most a day.
    static func check(lease: Duration) throws(GPUBridgeError) {
        guard lease > .zero, lease <= .seconds(86_400) else {
            throw .invalidArgument(name: "lease", value: "\(lease)", limit: "more than zero, at most a day")
        }
    }

    /// The age of Dead rows to remove: zero or more, at most a year.
    static func check(age: Duration) throws(GPUBridgeError) {
        guard age >= .zero, age <= .seconds(366 * 86_400) else {
            throw .invalidArgument(name: "olderThan", value: "\(age)", limit: "zero or more, at most a year")
        }
    }
}

extension Duration {
    /// Whole microseconds (rounded down, saturating at ±Int64.max / 2), for the tables' time arithmetic.
    var microseconds: Int64 {
        let (scaled, overflow) = components.seconds.multipliedReportingOverflow(by: 1_000_000)
        guard !overflow, abs(components.seconds) < Int64.max / 2_000_000 else {
            return components.seconds < 0 ? Int64.min / 2 : Int64.max / 2
        }
        return scaled + components.attoseconds / 1_000_000_000_000
    }
}
