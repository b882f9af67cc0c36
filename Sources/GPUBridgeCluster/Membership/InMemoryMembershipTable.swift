import Foundation
import GPUBridge
import Synchronization

/// The membership table in process memory: one process's nodes (a single node, or several in tests). Its clock is
/// `clock` (the system clock unless a test gives another), read under the table's lock, so it judges leases the way
/// PostgreSQL's `now()` does. Safe from any task; every call takes one lock.
public final class InMemoryMembershipTable: MembershipTable {
    private struct State {
        var rows: [NodeID: VersionedEntry] = [:]
        var version: Int64 = 0
    }

    private let state = Mutex(State())
    private let clock: @Sendable () -> Date

    public init(clock: @escaping @Sendable () -> Date = { Date() }) { self.clock = clock }

    public func readAll() async throws -> MembershipSnapshot {
        state.withLock { s in
            MembershipSnapshot(
                entries: s.rows.values.sorted { $0.entry.node < $1.entry.node }, version: s.version, now: clock())
        }
    }

    public func insert(_ entry: MembershipEntry, lease: Duration, expectedVersion: Int64) async throws -> Bool {
        try MembershipLimits.check(lease: lease)
        return state.withLock { s in
            guard s.version == expectedVersion, s.rows[entry.node] == nil else { return false }
            let now = clock()
            var row = entry
            row.iAmAlive = now
            row.startTime = now
            row.leaseExpires = now.addingTimeInterval(Double(lease.microseconds) / 1e6)
            s.rows[entry.node] = VersionedEntry(entry: row, etag: 1)
            s.version += 1
            return true
        }
    }

    public func update(_ entry: MembershipEntry, etag: Int64, expectedVersion: Int64) async throws -> Bool {
        state.withLock { s in
            guard s.version == expectedVersion, let row = s.rows[entry.node], row.etag == etag,
                row.entry.status != .dead
            else { return false }
            var next = row.entry
            next.status = entry.status
            next.capacity = entry.capacity
            next.labels = entry.labels
            next.leftGracefully = entry.leftGracefully
            s.rows[entry.node] = VersionedEntry(entry: next, etag: etag + 1)
            s.version += 1
            return true
        }
    }

    public func renewLease(_ node: NodeID, lease: Duration, capacity: NodeCapacity) async throws -> LeaseRenewal {
        try MembershipLimits.check(lease: lease)
        return state.withLock { s in
            let now = clock()
            guard let row = s.rows[node] else { return .lost(reason: "node \(node) has no membership row") }
            guard row.entry.status != .dead else { return .lost(reason: "node \(node) is Dead") }
            guard row.entry.leaseExpires > now else {
                s.rows[node]?.entry.status = .dead
                s.rows[node]?.etag += 1
                s.version += 1
                return .lost(reason: "the lease of node \(node) ended at \(row.entry.leaseExpires), before \(now)")
            }
            let expires = now.addingTimeInterval(Double(lease.microseconds) / 1e6)
            s.rows[node]?.entry.iAmAlive = now
            s.rows[node]?.entry.leaseExpires = expires
            s.rows[node]?.entry.capacity = capacity
            return .renewed(expires: expires, now: now)
        }
    }

    public func expireLeases() async throws -> [NodeID] {
        state.withLock { s in
            let now = clock()
            let expired = s.rows.values.filter { $0.entry.status != .dead && $0.entry.leaseExpires <= now }.map(
                \.entry.node
            ).sorted()
            for node in expired {
                s.rows[node]?.entry.status = .dead
                s.rows[node]?.etag += 1
            }
            if !expired.isEmpty { s.version += 1 }
            return expired
        }
    }

    public func removeDead(olderThan age: Duration) async throws -> [NodeID] {
        try MembershipLimits.check(age: age)
        return state.withLock { s in
            let cutoff = clock().addingTimeInterval(-Double(age.microseconds) / 1e6)
            let gone = s.rows.values.filter { $0.entry.status == .dead && $0.entry.leaseExpires < cutoff }.map(
                \.entry.node
            ).sorted()
            for node in gone { s.rows[node] = nil }
            return gone
        }
    }

    /// Whether `node`'s row is Active with a lease that has not ended (what a directory registration needs).
    func holdsActiveLease(_ node: NodeID) -> Bool {
        state.withLock { s in
            guard let row = s.rows[node]?.entry else { return false }
            return row.status == .active && row.leaseExpires > clock()
        }
    }

    public func reset() async throws {
        state.withLock { $0 = State() }
    }
}
