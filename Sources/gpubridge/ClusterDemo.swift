import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster

/// What the cluster part of `gpubridge demo` measured.
struct ClusterDemoReport: Encodable {
    var nodes: Int
    var indexes: Int
    /// Activations per node after placement, by node.
    var placement: [String: Int]
    var answersEqualSingleProcess: Bool
    var killedNode: String
    var indexesOnKilledNode: Int
    /// Milliseconds from the node halting until every survivor's membership view shows it Dead (about one lease, 2 s
    /// here, plus up to two rounds).
    var deathDeclaredMilliseconds: Double
    var reactivatedFromSnapshot: Bool
}

/// Three cluster nodes in this process on loopback: gRPC with mutual TLS (a fresh CA), in-memory membership, directory
/// and state, each node with its own CPU backend (so three fit in one process anywhere; `gpubridge node` uses the
/// machine's devices). Vector indexes are placed by capacity and queried from one node; then one node halts as if its
/// process died (no answers, no lease renewals), its lease ends and a survivor writes it Dead, and its indexes come
/// back on the survivors from their snapshot and journal. The single-process reference has storage of its own (sharing the cluster's would make
/// its activations claim, and fence, the cluster's actors of the same keys).
func runClusterDemo(dim: Int, log: (String) -> Void) async throws -> ClusterDemoReport {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gpubridge-demo-\(UUID().uuidString)")
        .path
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try ClusterCertificateAuthority(name: "demo cluster CA").write(to: folder, names: ["node"])
    let security = ClusterSecurity.mutualTLS(
        certificate: "\(folder)/node.pem", privateKey: "\(folder)/node-key.pem",
        trustRoots: "\(folder)/ca.pem")
    let membership = InMemoryMembershipTable(), directory = InMemoryActorDirectory(membership: membership),
        storage = InMemoryActorStorage()
    func system(storage: any ActorStorage) throws -> EmbeddedActorSystem {
        var options = BridgeOptions()
        options.cacheDirectory = nil
        options.backendOrder = [.cpu]
        let system = try EmbeddedActorSystem(
            bridge: try Bridge(options: options, backends: [CPUBackend()]), storage: storage)
        try NodeActors.register(system, vectorDim: dim)
        return system
    }
    var options = ClusterOptions()
    options.roundInterval = .milliseconds(200)
    options.leaseDuration = .seconds(2)
    var nodes: [ClusterNode] = []
    do {
        for _ in 0..<3 {
            let node = try ClusterNode(
                system: try system(storage: storage), membership: membership, directory: directory,
                transport: try GRPCNodeTransport(security: security), options: options)
            try await node.start()
            nodes.append(node)
        }
        // Each node sees the others once it has read the table again (every probe interval).
        for node in nodes {
            let count = nodes.count
            guard await node.waitForView(timeout: .seconds(10), until: { $0.active.count >= count }) != nil else {
                throw GPUBridgeError.backendFailure(
                    backend: "cluster", call: "demo", code: -1,
                    message: "node \(node.id) did not see the other nodes in 10 s")
            }
        }
        let report = try await clusterDemoSteps(
            nodes: nodes, directory: directory, reference: try system(storage: InMemoryActorStorage()),
            dim: dim, log: log)
        for node in nodes { await node.stop() }
        return report
    } catch {
        for node in nodes { await node.stop() }
        throw error
    }
}

private func clusterDemoSteps(
    nodes: [ClusterNode], directory: InMemoryActorDirectory,
    reference: EmbeddedActorSystem, dim: Int, log: (String) -> Void
) async throws -> ClusterDemoReport {
    log(
        "   3 nodes on 127.0.0.1 (ports \(nodes.map { "\($0.id.port)" }.joined(separator: ", "))), mutual TLS with a fresh CA"
    )

    // Indexes placed by capacity, called from the first node; a single-process system gives the reference answers.
    var random = SplitMix64(seed: 2026)
    let count = 12, rows = 500
    var equal = true
    var queries: [String: [Float]] = [:], answers: [String: [[VectorHit]]] = [:]
    for t in 0..<count {
        let key = "tenant-\(t)"
        let vectors = random.floats(rows * dim, -1, 1)
        let query = random.floats(2 * dim, -1, 1)
        let remote = try nodes[0].system.actor(VectorIndexActor.self, key: key)
        let local = try reference.actor(VectorIndexActor.self, key: key)
        _ = try await remote.upsert(ids: Array(0..<rows), vectors: vectors)
        _ = try await local.upsert(ids: Array(0..<rows), vectors: vectors)
        try await remote.checkpoint()
        let hits = try await remote.query(query, k: 5)
        equal = try await local.query(query, k: 5) == hits && equal
        queries[key] = query
        answers[key] = hits
    }
    let placed = Dictionary(grouping: try await directory.all(), by: \.node)
    let placement = Dictionary(uniqueKeysWithValues: placed.map { ("\($0.key.host):\($0.key.port)", $0.value.count) })
    log(
        "   \(count) vector indexes of \(rows) x \(dim) placed by capacity: "
            + nodes.map { "\($0.id.port): \(placed[$0.id]?.count ?? 0)" }.joined(separator: ", ")
            + "; answers \(equal ? "equal" : "DIFFER from") a single process")

    // One node goes silent.
    let victim = nodes.dropFirst().max { (placed[$0.id]?.count ?? 0) < (placed[$1.id]?.count ?? 0) }!
    let moved = placed[victim.id]?.count ?? 0
    let clock = ContinuousClock()
    let silent = clock.now
    await victim.halt()
    // Its lease ends; a survivor's round writes it Dead and each survivor learns of it in a round. Until a survivor
    // has, a call it routes to the dead node fails with nodeUnreachable (or is retried, with `retryUnreachableFor`):
    // the demo waits for all.
    let survivors = nodes.filter { $0 !== victim }
    let victimID = victim.id
    for survivor in survivors {
        guard
            await survivor.waitForView(timeout: .seconds(30), until: { $0.entry(of: victimID)?.entry.status == .dead })
                != nil
        else {
            throw GPUBridgeError.backendFailure(
                backend: "cluster", call: "demo", code: -1,
                message: "node \(survivor.id) did not learn of the silent node's death in 30 s")
        }
    }
    let declared = clock.now - silent
    log(
        "   node \(victim.id.port) halted (no more answers or lease renewals): its lease ended, and every survivor knew it Dead after \(declared.short)"
    )
    var restored = true
    for (key, query) in queries.sorted(by: { $0.key < $1.key }) {
        let index = try nodes[0].system.actor(VectorIndexActor.self, key: key)
        let count = try await index.vectorCount()
        let hits = try await index.query(query, k: 5)
        restored = restored && count == rows && hits == answers[key]
    }
    let now = Dictionary(grouping: try await directory.all(), by: \.node)
    log(
        "   its \(moved) indexes reactivated on the survivors from their snapshots: "
            + survivors.map { "\($0.id.port): \(now[$0.id]?.count ?? 0)" }.joined(separator: ", ")
            + "; answers \(restored ? "unchanged" : "CHANGED")")
    return ClusterDemoReport(
        nodes: nodes.count, indexes: count, placement: placement, answersEqualSingleProcess: equal,
        killedNode: victim.id.description, indexesOnKilledNode: moved,
        deathDeclaredMilliseconds: Double(declared.components.seconds) * 1e3
            + Double(declared.components.attoseconds) * 1e-15,
        reactivatedFromSnapshot: restored)
}
