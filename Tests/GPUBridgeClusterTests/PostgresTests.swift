import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeActorsTestSupport
import GPUBridgeTestSupport
import Synchronization
import Testing

@testable import GPUBridgeCluster

// MARK: Checks shared by the PostgreSQL and in-memory suites

/// A node with a distinct address and a realistic generation (microseconds since 1970).
private func testNode(_ index: Int, host: String = "10.0.0.1") -> NodeID {
    NodeID(host: host, port: 7000 + index, generation: 1_700_000_000_000_000 + Int64(index))
}

/// An entry whose every field the node writes is set (capacity with a device, labels).
private func fullEntry(_ node: NodeID, status: NodeStatus = .joining) -> MembershipEntry {
    MembershipEntry(
        node: node, status: status, iAmAlive: Date(), startTime: Date(),
        capacity: NodeCapacity(
            devices: [
                .init(
                    id: "cuda:0", backend: "cuda", name: "H100", totalMemory: 80 << 30,
                    freeMemory: 70 << 30)
            ],
            activations: 3, callsInFlight: 2),
        labels: ["host": "gpu-01", "version": "1.2.3", "ünïcode": "✓"])
}

/// `a` and `b` agree in every field a node writes (the times are the table's).
private func expectSame(_ a: MembershipEntry, _ b: MembershipEntry, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.node == b.node, sourceLocation: sourceLocation)
    #expect(a.status == b.status, sourceLocation: sourceLocation)
    #expect(a.leftGracefully == b.leftGracefully, sourceLocation: sourceLocation)
    #expect(a.capacity == b.capacity, sourceLocation: sourceLocation)
    #expect(a.labels == b.labels, sourceLocation: sourceLocation)
}

/// A lease long enough that no test outlives it.
private let longLease = Duration.seconds(600)

/// Insert and update compare-and-swap on the version and the etag; a Dead row never changes.
private func checkMembershipCAS(_ table: any MembershipTable) async throws {
    let empty = try await table.readAll()
    #expect(empty.version == 0)
    #expect(empty.entries.isEmpty)

    let a = fullEntry(testNode(1))
    #expect(try await table.insert(a, lease: longLease, expectedVersion: 0))
    var snapshot = try await table.readAll()
    #expect(snapshot.version == 1)
    #expect(snapshot.entries.count == 1)
    #expect(snapshot.entry(of: a.node)?.etag == 1)

    // A second insert from the stale version 0 (another node, or the same one) changes nothing.
    let b = fullEntry(testNode(2))
    #expect(try await table.insert(b, lease: longLease, expectedVersion: 0) == false)
    #expect(try await table.insert(a, lease: longLease, expectedVersion: 0) == false)
    // The same node again at the right version: the row exists, nothing changes.
    #expect(try await table.insert(a, lease: longLease, expectedVersion: 1) == false)
    #expect(try await table.readAll().entries == snapshot.entries)

    // Update with the right etag and version bumps both.
    var changed = a
    changed.status = .active
    changed.labels["zone"] = "b"
    #expect(try await table.update(changed, etag: 1, expectedVersion: 1))
    snapshot = try await table.readAll()
    #expect(snapshot.version == 2)
    let row = try #require(snapshot.entry(of: a.node))
    #expect(row.etag == 2)
    expectSame(row.entry, changed)

    // A stale etag fails; a stale version fails; neither changes anything.
    var again = changed
    again.status = .shuttingDown
    #expect(try await table.update(again, etag: 1, expectedVersion: 2) == false)
    #expect(try await table.update(again, etag: 2, expectedVersion: 1) == false)
    // An update of a node without a row fails too.
    #expect(try await table.update(fullEntry(testNode(3)), etag: 1, expectedVersion: 2) == false)
    #expect(try await table.readAll().entries == snapshot.entries)

    // Inserting the second node at the current version works.
    #expect(try await table.insert(b, lease: longLease, expectedVersion: 2))
    snapshot = try await table.readAll()
    #expect(snapshot.version == 3)
    #expect(snapshot.entries.map(\.entry.node) == [a.node, b.node])

    // Dead is final: with the right etag and version, no update moves a row out of it.
    var dead = changed
    dead.status = .dead
    dead.leftGracefully = true
    #expect(try await table.update(dead, etag: 2, expectedVersion: 3))
    snapshot = try await table.readAll()
    expectSame(try #require(snapshot.entry(of: a.node)).entry, dead)
    for status in [NodeStatus.joining, .active, .shuttingDown, .dead] {
        var back = dead
        back.status = status
        #expect(try await table.update(back, etag: 3, expectedVersion: snapshot.version) == false, "\(status)")
    }
    #expect(try await table.readAll().entries == snapshot.entries)

    try await table.reset()
    let reset = try await table.readAll()
    #expect(reset.version == 0)
    #expect(reset.entries.isEmpty)
    #expect(try await table.insert(a, lease: longLease, expectedVersion: 0))
}

/// Ten writers update the same row from the same snapshot at once: exactly one wins.
private func checkConcurrentUpdates(_ table: any MembershipTable) async throws {
    let node = testNode(1)
    #expect(try await table.insert(fullEntry(node), lease: longLease, expectedVersion: 0))
    let snapshot = try await table.readAll()
    let row = try #require(snapshot.entry(of: node))
    let wins = try await withThrowingTaskGroup(of: Bool.self, returning: Int.self) { group in
        for writer in 0..<10 {
            var entry = row.entry
            entry.labels["writer"] = "\(writer)"
            group.addTask { try await table.update(entry, etag: row.etag, expectedVersion: snapshot.version) }
        }
        return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
    }
    #expect(wins == 1)
    let after = try await table.readAll()
    #expect(after.version == snapshot.version + 1)
    #expect(after.entry(of: node)?.etag == row.etag + 1)
    #expect(after.entry(of: node)?.entry.labels["writer"] != nil)

    // Concurrent inserts of different nodes from the same version: exactly one wins too.
    let inserts = try await withThrowingTaskGroup(of: Bool.self, returning: Int.self) { group in
        for index in 10..<20 {
            group.addTask {
                try await table.insert(fullEntry(testNode(index)), lease: longLease, expectedVersion: after.version)
            }
        }
        return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
    }
    #expect(inserts == 1)
    let finished = try await table.readAll()
    #expect(finished.version == after.version + 1)
    #expect(finished.entries.count == 2)
}

/// Leases by the table's clock: renewals extend them without a version change; an ended lease makes the node Dead
/// (by `expireLeases` or by its own late renewal), for good; old Dead rows are removed. `pass(d)` lets at least `d`
/// of the table's time go by.
private func checkLeases(
    _ table: any MembershipTable, short: Duration = .milliseconds(50), pass: (Duration) async throws -> Void
) async throws {
    let live = testNode(1), late = testNode(2), lapsed = testNode(3)
    #expect(try await table.insert(fullEntry(live, status: .active), lease: longLease, expectedVersion: 0))
    #expect(try await table.insert(fullEntry(late, status: .active), lease: short, expectedVersion: 1))
    #expect(try await table.insert(fullEntry(lapsed, status: .active), lease: short, expectedVersion: 2))
    let before = try await table.readAll()
    let row = try #require(before.entry(of: live)).entry
    // The lease is exactly the asked duration after the row's time, all from the table's clock.
    #expect(PostgresStore.microseconds(row.leaseExpires) - PostgresStore.microseconds(row.iAmAlive) == 600_000_000)
    #expect(row.iAmAlive <= before.now && row.leaseExpires > before.now)
    // Active means Active with a lease that has not ended at the read (a slow database may already have let the short
    // ones end).
    #expect(
        before.active.map(\.node)
            == [live, late, lapsed].filter { before.entry(of: $0).map { $0.entry.leaseExpires > before.now } ?? false })
    #expect(before.active.map(\.node).contains(live))

    // A renewal: new lease from the table's clock, capacity recorded, no version or etag change.
    let capacity = NodeCapacity(devices: [], activations: 42, callsInFlight: 7)
    guard case let .renewed(expires, now) = try await table.renewLease(live, lease: .seconds(900), capacity: capacity)
    else {
        Issue.record("a live lease was not renewed")
        return
    }
    #expect(PostgresStore.microseconds(expires) - PostgresStore.microseconds(now) == 900_000_000)
    let renewed = try await table.readAll()
    #expect(renewed.version == before.version)
    #expect(renewed.entry(of: live)?.etag == before.entry(of: live)?.etag)
    #expect(renewed.entry(of: live)?.entry.capacity == capacity)
    #expect(renewed.entry(of: live)?.entry.leaseExpires == expires)
    // No row: lost.
    guard case .lost = try await table.renewLease(testNode(9), lease: longLease, capacity: capacity) else {
        Issue.record("a node without a row renewed a lease")
        return
    }

    // The short leases end. `expireLeases` writes both Dead (one version bump); the long one lives.
    try await pass(short + .milliseconds(10))
    let ended = try await table.readAll()
    #expect(ended.active.map(\.node) == [live], "an ended lease is not active even before it is written Dead")
    #expect(try await table.expireLeases() == [late, lapsed])
    let expired = try await table.readAll()
    #expect(expired.version == ended.version + 1)
    #expect(expired.entry(of: late)?.entry.status == .dead)
    #expect(expired.entry(of: late)?.entry.leftGracefully == false)
    #expect(expired.entry(of: live)?.entry.status == .active)
    #expect(try await table.expireLeases() == [])
    // A Dead node's renewal is refused, and its row stays Dead.
    guard case .lost = try await table.renewLease(late, lease: longLease, capacity: capacity) else {
        Issue.record("a Dead node renewed its lease")
        return
    }
    var revived = try #require(expired.entry(of: late))
    revived.entry.status = .active
    #expect(try await table.update(revived.entry, etag: revived.etag, expectedVersion: expired.version) == false)

    // A renewal after the lease ended, before anyone expired it, is refused and writes the row Dead itself.
    let other = testNode(4)
    #expect(
        try await table.insert(
            fullEntry(other, status: .active), lease: short, expectedVersion: expired.version))
    try await pass(short + .milliseconds(10))
    guard case .lost = try await table.renewLease(other, lease: longLease, capacity: capacity) else {
        Issue.record("a lease was renewed after it ended")
        return
    }
    #expect(try await table.readAll().entry(of: other)?.entry.status == .dead)
    #expect(try await table.expireLeases() == [])

    // Nonsense durations are refused before anything changes, naming the argument, the value and the limit.
    let rowsBefore = try await table.readAll().entries
    for (name, call) in [
        ("lease", { _ = try await table.renewLease(live, lease: .zero, capacity: capacity) }),
        ("lease", { _ = try await table.renewLease(live, lease: .seconds(86_401), capacity: capacity) }),
        ("lease", { _ = try await table.insert(fullEntry(testNode(8)), lease: .seconds(-1), expectedVersion: 0) }),
        ("olderThan", { _ = try await table.removeDead(olderThan: .seconds(-1)) }),
    ] as [(String, () async throws -> Void)] {
        do {
            try await call()
            Issue.record("\(name): accepted")
        } catch let error as GPUBridgeError {
            guard case let .invalidArgument(got, value, limit) = error else { throw error }
            #expect(got == name && !value.isEmpty && !limit.isEmpty)
        }
    }
    #expect(try await table.readAll().entries == rowsBefore)

    // Old Dead rows go; young ones and live rows stay.
    #expect(try await table.removeDead(olderThan: .seconds(3_600)) == [])
    try await pass(.milliseconds(5))
    #expect(try await table.removeDead(olderThan: .zero) == [late, lapsed, other])
    #expect(try await table.readAll().entries.map(\.entry.node) == [live])
}

/// Every field a node writes survives a write and a read, for every status.
private func checkRoundTrip(_ table: any MembershipTable) async throws {
    var version: Int64 = 0
    for (index, status) in NodeStatus.allCases.enumerated() {
        let entry = fullEntry(testNode(index), status: status)
        #expect(try await table.insert(entry, lease: longLease, expectedVersion: version))
        version += 1
        let row = try #require(try await table.readAll().entry(of: entry.node))
        expectSame(row.entry, entry)
    }
    // Empty collections too.
    let bare = MembershipEntry(
        node: testNode(50, host: "[::1]"), status: .active,
        iAmAlive: Date(timeIntervalSince1970: 0.001), startTime: Date(timeIntervalSince1970: 0))
    #expect(try await table.insert(bare, lease: longLease, expectedVersion: version))
    let row = try #require(try await table.readAll().entry(of: bare.node))
    expectSame(row.entry, bare)
}

/// Rows for `nodes`, Active with a long lease (a directory registers only on such nodes).
private func makeLive(_ nodes: [NodeID], in table: any MembershipTable) async throws {
    for node in nodes {
        let version = try await table.readAll().version
        #expect(try await table.insert(fullEntry(node, status: .active), lease: longLease, expectedVersion: version))
    }
}

/// 32 nodes register the same actor at once: one activation, the same address for all.
private func checkDirectoryConcurrency(
    _ directory: any ActorDirectory, _ table: any MembershipTable
) async throws {
    try await makeLive((0..<32).map { testNode($0) } + [testNode(77)], in: table)
    let id = GPUActorID(type: "Index", key: "tenant-7")
    #expect(try await directory.lookup(id) == nil)
    let addresses = try await withThrowingTaskGroup(of: ActorAddress.self, returning: [ActorAddress].self) { group in
        for index in 0..<32 {
            group.addTask { try await directory.register(id, on: testNode(index)) }
        }
        return try await group.reduce(into: []) { $0.append($1) }
    }
    #expect(addresses.count == 32)
    #expect(Set(addresses).count == 1)
    let winner = try #require(addresses.first)
    #expect(winner.id == id)
    #expect(try await directory.lookup(id) == winner)
    #expect(try await directory.all() == [winner])
    // A later register on another node returns the registered activation.
    #expect(try await directory.register(id, on: testNode(77)) == winner)
}

/// Unregister compares the activation; a re-registration gets a higher number; unregisterAll counts.
private func checkUnregister(_ directory: any ActorDirectory, _ table: any MembershipTable) async throws {
    try await makeLive([testNode(1), testNode(2), testNode(10), testNode(11)], in: table)
    let id = GPUActorID(type: "Index", key: "k")
    let first = try await directory.register(id, on: testNode(1))
    var wrong = first
    wrong.activation += 1_000
    #expect(try await directory.unregister(wrong) == false)
    var otherNode = first
    otherNode.node = testNode(2)
    #expect(try await directory.unregister(otherNode) == false)
    #expect(try await directory.lookup(id) == first)
    #expect(try await directory.unregister(first))
    #expect(try await directory.unregister(first) == false)
    #expect(try await directory.lookup(id) == nil)
    let second = try await directory.register(id, on: testNode(2))
    #expect(second.node == testNode(2))
    #expect(second.activation > first.activation)

    // unregisterAll(on:) removes exactly the node's activations.
    let a = testNode(10)
    let b = testNode(11)
    for key in 0..<3 { _ = try await directory.register(GPUActorID(type: "A", key: "\(key)"), on: a) }
    for key in 0..<2 { _ = try await directory.register(GPUActorID(type: "B", key: "\(key)"), on: b) }
    #expect(try await directory.all().count == 6)
    #expect(try await directory.unregisterAll(on: a) == 3)
    #expect(try await directory.unregisterAll(on: a) == 0)
    let left = try await directory.all()
    #expect(left.map(\.id) == [GPUActorID(type: "B", key: "0"), GPUActorID(type: "B", key: "1"), id])
    #expect(try await directory.unregisterAll(on: b) == 2)
    #expect(try await directory.all() == [second])
}

/// A registration lands only on a node whose row is Active with a live lease; an existing one is returned whatever
/// its node.
private func checkRegisterNeedsLease(
    _ directory: any ActorDirectory, _ table: any MembershipTable, short: Duration = .milliseconds(50),
    pass: (Duration) async throws -> Void
) async throws {
    let joining = testNode(1), active = testNode(2), brief = testNode(3), unknown = testNode(4)
    #expect(try await table.insert(fullEntry(joining), lease: longLease, expectedVersion: 0))
    #expect(try await table.insert(fullEntry(active, status: .active), lease: longLease, expectedVersion: 1))
    // `brief` starts with a long lease, so registering on it below does not race the clock on a loaded machine; its
    // lease is then renewed to `short`, and ends once `short` has passed.
    #expect(try await table.insert(fullEntry(brief, status: .active), lease: longLease, expectedVersion: 2))
    for node in [joining, unknown] {
        do {
            let address = try await directory.register(GPUActorID(type: "A", key: "\(node.port)"), on: node)
            Issue.record("registered on \(node), which holds no active lease: \(address)")
        } catch let error as ClusterError {
            guard case let .noActiveNodes(_, reason) = error else { throw error }
            #expect(reason.contains("\(node)") && reason.contains("lease"))
        }
    }
    let kept = try await directory.register(GPUActorID(type: "A", key: "s"), on: brief)
    guard case .renewed = try await table.renewLease(brief, lease: short, capacity: NodeCapacity()) else {
        Issue.record("could not renew the lease of \(brief)")
        return
    }
    try await pass(short + .milliseconds(10))
    do {
        _ = try await directory.register(GPUActorID(type: "A", key: "after"), on: brief)
        Issue.record("registered on a node whose lease ended")
    } catch let error as ClusterError {
        guard case .noActiveNodes = error else { throw error }
    }
    // The existing registration is returned as it is (callers judge its node); a live node registers.
    #expect(try await directory.register(GPUActorID(type: "A", key: "s"), on: active) == kept)
    #expect(try await directory.register(GPUActorID(type: "A", key: "fresh"), on: active).node == active)
    #expect(try await directory.all().count == 2)
}

// MARK: PostgreSQL

/// The test server's URL (scripts/test starts one).
private var databaseURL: String { ProcessInfo.processInfo.environment["GPUBRIDGE_TEST_DATABASE_URL"] ?? "" }

/// A cluster name no other test or run uses.
private func uniqueCluster() -> String { "test-\(UUID().uuidString)" }

@Suite(
    "PostgreSQL membership, directory and storage",
    .enabled(
        if: ProcessInfo.processInfo.environment["GPUBRIDGE_TEST_DATABASE_URL"] != nil,
        "needs a PostgreSQL server: scripts/test starts one and sets GPUBRIDGE_TEST_DATABASE_URL"))
struct PostgresTests {
    @Test("membership: insert and update are compare-and-swaps on the version and the etag")
    func membershipCAS() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            try await checkMembershipCAS(PostgresMembershipTable(store: store, cluster: uniqueCluster()))
        }
    }

    @Test("membership: of 10 concurrent updates from one snapshot exactly one succeeds")
    func membershipConcurrentUpdates() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            try await checkConcurrentUpdates(PostgresMembershipTable(store: store, cluster: uniqueCluster()))
        }
    }

    @Test("membership: leases by the server's clock: renewal, expiry, Dead for good, removal")
    func membershipLeases() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            let table = PostgresMembershipTable(store: store, cluster: uniqueCluster())
            try await checkLeases(table, short: .seconds(1)) { time in
                try await Task.sleep(for: time)  // the server's clock has to move on its own
            }
        }
    }

    @Test("membership: every field round-trips, dates to the millisecond")
    func membershipRoundTrip() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            try await checkRoundTrip(PostgresMembershipTable(store: store, cluster: uniqueCluster()))
        }
    }

    @Test("membership: clusters sharing a database do not see each other")
    func membershipClustersAreSeparate() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            let one = PostgresMembershipTable(store: store, cluster: uniqueCluster())
            let two = PostgresMembershipTable(store: store, cluster: uniqueCluster())
            #expect(try await one.insert(fullEntry(testNode(1)), lease: longLease, expectedVersion: 0))
            #expect(try await two.insert(fullEntry(testNode(1)), lease: longLease, expectedVersion: 0))
            #expect(try await one.readAll().version == 1)
            try await two.reset()
            #expect(try await one.readAll().entries.count == 1)
            #expect(try await two.readAll().entries.isEmpty)
        }
    }

    @Test("directory: 32 concurrent registrations of one actor get one activation")
    func directoryConcurrency() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            let cluster = uniqueCluster()
            try await checkDirectoryConcurrency(
                PostgresActorDirectory(store: store, cluster: cluster),
                PostgresMembershipTable(store: store, cluster: cluster))
        }
    }

    @Test("directory: unregister compares the activation; unregisterAll counts")
    func directoryUnregister() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            let cluster = uniqueCluster()
            try await checkUnregister(
                PostgresActorDirectory(store: store, cluster: cluster),
                PostgresMembershipTable(store: store, cluster: cluster))
        }
    }

    @Test("directory: registers only on a node with an active, live lease")
    func directoryNeedsLease() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            let cluster = uniqueCluster()
            try await checkRegisterNeedsLease(
                PostgresActorDirectory(store: store, cluster: cluster),
                PostgresMembershipTable(store: store, cluster: cluster), short: .seconds(1)
            ) { time in try await Task.sleep(for: time) }
        }
    }

    @Test("storage: the ActorStorage contract (epochs, fencing, gaps, chunked snapshots, atomic trim, group commit)")
    func storageContract() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            try await checkStorageContract(PostgresActorStorage(store: store, cluster: uniqueCluster()))
        }
    }

    @Test("schema: concurrent migrations from several stores succeed")
    func concurrentMigrations() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    try await PostgresStore.withStore(url: databaseURL) { store in try await store.migrate() }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test("a failing query throws backendFailure with the server's message")
    func backendFailure() async throws {
        try await PostgresStore.withStore(url: databaseURL) { store in
            let error = await bridgeError {
                try await store.withConnection("select from a missing table") { connection in
                    _ = try await connection.query("SELECT * FROM gb_no_such_table", logger: store.logger)
                }
            }
            guard case let .backendFailure(backend, call, _, message) = error else {
                Issue.record("expected backendFailure, got \(String(describing: error))")
                return
            }
            #expect(backend == "postgresql")
            #expect(call == "select from a missing table")
            #expect(message.contains("gb_no_such_table"))
        }
    }
}

// MARK: URL parsing (no server needed)

@Suite("PostgreSQL URLs")
struct PostgresURLTests {
    @Test("good URLs parse; the port defaults to 5432")
    func goodURLs() throws {
        let store = try PostgresStore(url: "postgres://alice:secret@db.example.com:6543/cluster")
        #expect(store.host == "db.example.com")
        #expect(store.port == 6543)
        #expect(store.username == "alice")
        #expect(store.database == "cluster")

        #expect(
            try PostgresStore.parse(url: "postgresql://bob@127.0.0.1/gpubridge")
                == .init(user: "bob", password: nil, host: "127.0.0.1", port: 5432, database: "gpubridge"))
        #expect(
            try PostgresStore.parse(url: "POSTGRES://u:p%40ss%3Aw@[::1]:5000/my%20db")
                == .init(user: "u", password: "p@ss:w", host: "::1", port: 5000, database: "my db"))
        #expect(
            try PostgresStore.parse(url: "postgres://u:@h:1/d")
                == .init(user: "u", password: "", host: "h", port: 1, database: "d"))
        #expect(try PostgresStore.parse(url: "postgres://u@h:65535/d").port == 65_535)
        // TLS modes as libpq names them; prefer when none is named.
        #expect(try PostgresStore.parse(url: "postgres://u@h/d").tls == .prefer)
        #expect(try PostgresStore.parse(url: "postgres://u@h/d?sslmode=disable").tls == .disable)
        #expect(try PostgresStore.parse(url: "postgres://u@h/d?sslmode=require").tls == .require)
        #expect(
            try PostgresStore.parse(url: "postgres://u@h/my%20db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem")
                == .init(
                    user: "u", password: nil, host: "h", port: 5432, database: "my db",
                    tls: .verifyFull(rootCertificate: "/etc/ca.pem")))
        #expect(
            try PostgresStore.parse(url: "postgres://u@h/d?sslmode=verify-ca").tls == .verifyCA(rootCertificate: nil))
    }

    @Test(
        "bad URLs throw invalidArgument naming databaseURL",
        arguments: [
            "mysql://u@h:5432/d", "http://u@h/d", "u@h:5432/d", "", "postgres://",
            "postgres://u@:5432/d", "postgres://u@/d",
            "postgres://u@h:0/d", "postgres://u@h:70000/d", "postgres://u@h:-1/d", "postgres://u@h:port/d",
            "postgres://u@h:/d",
            "postgres://u@h:5432", "postgres://u@h:5432/", "postgres://u@h/d?sslmode=bogus", "postgres://u@h/d?ssl=1",
            "postgres://u@h/d?sslmode=require&sslrootcert=/ca.pem", "postgres://u@h/d?sslmode", "postgres://u@h/d#x",
            "postgres://h:5432/d", "postgres://:p@h:5432/d", "postgres://u@[::1/d",
        ])
    func badURLs(url: String) {
        let error = bridgeError { try PostgresStore(url: url) }
        guard case let .invalidArgument(name, _, limit) = error else {
            Issue.record("expected invalidArgument for \(url), got \(String(describing: error))")
            return
        }
        #expect(name == "databaseURL")
        #expect(limit == PostgresStore.urlForm)
    }

    @Test("errors do not show the password")
    func passwordRedacted() {
        let error = bridgeError { try PostgresStore(url: "postgres://u:hunter2@h:0/d") }
        #expect(error != nil)
        #expect(!(error?.description.contains("hunter2") ?? true))
        #expect(PostgresStore.redacted("postgres://u:hunter2@h/d") == "postgres://u:***@h/d")
    }
}

// MARK: The same checks on the in-memory implementations

@Suite("In-memory membership table and directory")
struct InMemoryClusterStoreTests {
    @Test("membership: insert and update are compare-and-swaps on the version and the etag")
    func membershipCAS() async throws { try await checkMembershipCAS(InMemoryMembershipTable()) }

    @Test("membership: of 10 concurrent updates from one snapshot exactly one succeeds")
    func membershipConcurrentUpdates() async throws { try await checkConcurrentUpdates(InMemoryMembershipTable()) }

    @Test("membership: leases by the table's clock: renewal, expiry, Dead for good, removal")
    func membershipLeases() async throws {
        let clock = ManualClock()
        try await checkLeases(InMemoryMembershipTable(clock: { clock.now })) { clock.advance($0) }
    }

    @Test("membership: every field round-trips")
    func membershipRoundTrip() async throws { try await checkRoundTrip(InMemoryMembershipTable()) }

    @Test("directory: 32 concurrent registrations of one actor get one activation")
    func directoryConcurrency() async throws {
        let table = InMemoryMembershipTable()
        try await checkDirectoryConcurrency(InMemoryActorDirectory(membership: table), table)
    }

    @Test("directory: unregister compares the activation; unregisterAll counts")
    func directoryUnregister() async throws {
        let table = InMemoryMembershipTable()
        try await checkUnregister(InMemoryActorDirectory(membership: table), table)
    }

    @Test("directory: registers only on a node with an active, live lease")
    func directoryNeedsLease() async throws {
        let clock = ManualClock()
        let table = InMemoryMembershipTable(clock: { clock.now })
        try await checkRegisterNeedsLease(InMemoryActorDirectory(membership: table), table) { clock.advance($0) }
    }
}

// MARK: TLS to the database

@Suite(
    "PostgreSQL over TLS",
    .enabled(
        if: ProcessInfo.processInfo.environment["GPUBRIDGE_TEST_DATABASE_URL"] != nil
            && ProcessInfo.processInfo.environment["GPUBRIDGE_TEST_DATABASE_SSL_ROOT"] != nil,
        "needs the test server with TLS on: scripts/test starts one when openssl is installed"))
struct PostgresTLSTests {
    /// Whether the session `url` opens is encrypted, as the server sees it; throws when it cannot connect within
    /// `limit` (postgres-nio keeps retrying a connection its TLS check refuses).
    static func encrypted(_ url: String, within limit: Duration = .seconds(20)) async throws -> Bool? {
        try await withThrowingTaskGroup(of: Bool?.self) { group in
            group.addTask {
                try await PostgresStore.withStore(url: url, migrate: false) { store in
                    try await store.withConnection("is this session encrypted") { connection in
                        try await connection.query(
                            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: store.logger
                        ).collect().first?.decode(Bool.self)
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: limit)
                throw GPUBridgeError.backendFailure(
                    backend: "test", call: "connect", code: -1, message: "no connection within \(limit)")
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }

    @Test("sslmode: disable is plain; prefer and require encrypt; verify-full checks the server's certificate")
    func modes() async throws {
        let url = try #require(ProcessInfo.processInfo.environment["GPUBRIDGE_TEST_DATABASE_URL"])
        let root = try #require(ProcessInfo.processInfo.environment["GPUBRIDGE_TEST_DATABASE_SSL_ROOT"])
        let base = String(url.split(separator: "?", maxSplits: 1)[0])
        let encodedRoot = try #require(root.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
        #expect(try await Self.encrypted(base + "?sslmode=disable") == false)
        #expect(try await Self.encrypted(base) == true)  // prefer, the default
        #expect(try await Self.encrypted(base + "?sslmode=require") == true)
        #expect(try await Self.encrypted(base + "?sslmode=verify-full&sslrootcert=\(encodedRoot)") == true)
        // Another CA's root: the server's certificate does not chain to it, so no connection is made.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gb-tls-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try ClusterCertificateAuthority(name: "not the database's CA").write(to: folder, names: ["x"])
        let other = try #require("\(folder)/ca.pem".addingPercentEncoding(withAllowedCharacters: .alphanumerics))
        await #expect(throws: (any Error).self) {
            _ = try await Self.encrypted(base + "?sslmode=verify-full&sslrootcert=\(other)", within: .seconds(3))
        }
        // A root file that does not exist is named before anything connects.
        let error = bridgeError { try PostgresStore(url: base + "?sslmode=verify-full&sslrootcert=%2Fno%2Fsuch.pem") }
        guard case let .invalidArgument(name, value, _)? = error else {
            Issue.record("expected invalidArgument, got \(String(describing: error))")
            return
        }
        #expect(name == "sslrootcert" && value == "/no/such.pem")
    }
}
