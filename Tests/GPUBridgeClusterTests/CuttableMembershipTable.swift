import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import Synchronization

/// One node's link to a shared membership table, which a test can cut: while cut, every call throws as an unreachable
/// database would; while hung, every call waits (until cancelled) as a database that accepts connections and never
/// answers would. The shared table itself goes on for the other nodes.
final class CuttableMembershipTable: MembershipTable {
    let inner: any MembershipTable
    private let cut = Mutex(false)
    private let hung = Mutex(false)

    var isHung: Bool {
        get { hung.withLock { $0 } }
        set { hung.withLock { $0 = newValue } }
    }

    init(_ inner: any MembershipTable) { self.inner = inner }

    var isCut: Bool {
        get { cut.withLock { $0 } }
        set { cut.withLock { $0 = newValue } }
    }

    private func check(_ call: String) async throws {
        // A hung link answers nothing: the caller's own timeout (its cancellation) is the only way out.
        while isHung { try await Task.sleep(for: .milliseconds(10)) }
        if isCut {
            throw GPUBridgeError.backendFailure(
                backend: "membership", call: call, code: -1, message: "the test cut this node's database link")
        }
    }

    func readAll() async throws -> MembershipSnapshot {
        try await check("readAll")
        return try await inner.readAll()
    }

    func insert(_ entry: MembershipEntry, lease: Duration, expectedVersion: Int64) async throws -> Bool {
        try await check("insert")
        return try await inner.insert(entry, lease: lease, expectedVersion: expectedVersion)
    }

    func update(_ entry: MembershipEntry, etag: Int64, expectedVersion: Int64) async throws -> Bool {
        try await check("update")
        return try await inner.update(entry, etag: etag, expectedVersion: expectedVersion)
    }

    func renewLease(_ node: NodeID, lease: Duration, capacity: NodeCapacity) async throws -> LeaseRenewal {
        try await check("renewLease")
        return try await inner.renewLease(node, lease: lease, capacity: capacity)
    }

    func expireLeases() async throws -> [NodeID] {
        try await check("expireLeases")
        return try await inner.expireLeases()
    }

    func removeDead(olderThan age: Duration) async throws -> [NodeID] {
        try await check("removeDead")
        return try await inner.removeDead(olderThan: age)
    }

    func reset() async throws {
        try await check("reset")
        try await inner.reset()
    }
}

/// A directory a client may only read: every write throws and is counted (a client must need none).
final class ReadOnlyDirectory: ActorDirectory {
    let inner: any ActorDirectory
    private let writes = Mutex<[String]>([])

    init(_ inner: any ActorDirectory) { self.inner = inner }

    /// The writes attempted so far.
    var attemptedWrites: [String] { writes.withLock { $0 } }

    private func refuse(_ what: String) -> any Error {
        writes.withLock { $0.append(what) }
        return GPUBridgeError.backendFailure(
            backend: "directory", call: what, code: -1, message: "permission denied: this role may only read")
    }

    func lookup(_ id: GPUActorID) async throws -> ActorAddress? { try await inner.lookup(id) }
    func register(_ id: GPUActorID, on node: NodeID) async throws -> ActorAddress { throw refuse("register \(id)") }
    func unregister(_ address: ActorAddress) async throws -> Bool { throw refuse("unregister \(address)") }
    func unregisterAll(on node: NodeID) async throws -> Int { throw refuse("unregisterAll \(node)") }
    func all() async throws -> [ActorAddress] { try await inner.all() }
}

/// A clock a test moves by hand (the in-memory table's `now()`): leases end only when the test says so, so a node
/// starved of CPU by other suites (a sanitizer run) never loses its lease by accident.
final class ManualClock: Sendable {
    private let time = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    var now: Date { time.withLock { $0 } }
    func advance(_ duration: Duration) {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
        time.withLock { $0 = $0.addingTimeInterval(seconds) }
    }
}
