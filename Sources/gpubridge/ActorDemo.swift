import Distributed
import Foundation
import GPUBridge
import GPUBridgeActors

/// The actors showcase: a resident vector index of `vectors` x `dim` float32 vectors in device memory, bulk-loaded,
/// queried concurrently, deactivated to a SQLite file, reactivated from it and queried again with identical answers;
/// then the cost of an actor call around a 1M-element vector add against the same request made directly.
/// What the actors showcase measured, for `gpubridge demo --json`.
struct ActorDemoReport: Encodable {
    var device = ""
    var vectors = 0
    var dim = 0
    var bulkLoadMilliseconds = 0.0
    var queries = 0
    var queryMilliseconds = 0.0
    var matrixBytesUploadedPerQuery = 0
    var bytesCopiedPerQuery = 0
    var deactivateMilliseconds = 0.0
    var snapshotBytes: Int?
    var reactivateMilliseconds = 0.0
    var identicalAnswersAfterReactivation = false
    var actorCallMilliseconds = 0.0
    var directCallMilliseconds = 0.0
    var actorOverDirect = 0.0
    /// The actor call's sum and the direct call's sum both equal the host's a + b, element for element.
    var vectorAddVerified = false
}

/// `log` receives the human-readable lines (the CLI prints them, or drops them for `--json`).
@discardableResult
func runActorDemo(bridge: Bridge, vectors: Int, dim: Int, log: (String) -> Void = { print($0) }) async throws
    -> ActorDemoReport
{
    var report = ActorDemoReport()
    report.vectors = vectors
    report.dim = dim
    guard vectors >= 1, vectors <= 10_000_000 else {
        throw GPUBridgeError.invalidArgument(name: "vectors", value: String(vectors), limit: "1...10000000")
    }
    guard dim >= 1, dim <= VectorIndexActor.maxDim else {
        throw GPUBridgeError.invalidArgument(name: "dim", value: String(dim), limit: "1...\(VectorIndexActor.maxDim)")
    }
    let clock = ContinuousClock()
    func ms(_ d: Duration) -> String { String(format: "%.1f ms", Double(d.nanoseconds) / 1e6) }
    func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }

    let path = NSTemporaryDirectory() + "gpubridge-actor-demo-\(getpid()).sqlite"
    defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
    let system = try EmbeddedActorSystem(bridge: bridge, storage: try SQLiteActorStorage(path: path))
    try system.register(VectorIndexActor.self, as: "vector-index") {
        VectorIndexActor(actorSystem: $0, dim: dim, initialCapacity: vectors)
    }
    try system.register(BatchActor<FloatPair, [Float]>.self, as: "vector-add") {
        BatchActor(actorSystem: $0, operation: ActorOperations.vectorAdd, maxInFlight: 4)
    }
    log(
        "Actors: a resident vector index of \(vectors) x \(dim) float32 (\(mib(vectors * dim * 4))), state in SQLite at \(path)"
    )

    // Data.
    var t = clock.now
    var random = SplitMix64(seed: 2024)
    let data = random.floats(vectors * dim, -1, 1)
    let queryCount = 32, k = 10
    let queries = (0..<queryCount).map { _ in random.floats(dim, -1, 1) }
    log("  generated the vectors in \(ms(clock.now - t))")

    // Bulk load: activation (placement, allocation) then chunked upserts straight into the device matrix.
    let index = try system.actor(VectorIndexActor.self, key: "demo")
    t = clock.now
    let chunk = max(1, min(vectors, (16 << 20) / (4 * dim)))
    var start = 0
    while start < vectors {
        let end = min(vectors, start + chunk)
        try await index.upsert(ids: Array(start..<end), vectors: Array(data[start * dim..<end * dim]))
        start = end
    }
    let loaded = clock.now - t
    let placed =
        try system.placement(of: index.id)
        ?? { throw GPUBridgeError.notFound(kind: "placement", name: "\(index.id)") }()
    guard let device = bridge.devices.first(where: { $0.id == placed }) else {
        throw GPUBridgeError.notFound(kind: "device", name: placed.description)
    }
    log("  activated on \(device.id) (\(device.info.name)) and bulk-loaded \(vectors) vectors in \(ms(loaded))")
    report.device = device.id.description
    report.bulkLoadMilliseconds = Double(loaded.nanoseconds) / 1e6

    // Concurrent queries on the resident matrix.
    func queryAll() async throws -> (answers: [[VectorHit]], elapsed: Duration) {
        let t = clock.now
        let answers = try await withThrowingTaskGroup(of: (Int, [VectorHit]).self) { group in
            for (i, q) in queries.enumerated() { group.addTask { (i, try await index.query(q, k: k)[0]) } }
            var answers = [[VectorHit]](repeating: [], count: queryCount)
            for try await (i, hits) in group { answers[i] = hits }
            return answers
        }
        return (answers, clock.now - t)
    }
    let before = try await index.stats()
    let copiedBefore = device.counters.bytesCopied
    let first = try await queryAll()
    let after = try await index.stats()
    let copied = device.counters.bytesCopied - copiedBefore
    log(
        "  \(queryCount) concurrent top-\(k) queries in \(ms(first.elapsed)) (\(ms(first.elapsed / queryCount)) per query)"
    )
    log(
        "    bytes uploaded per query: matrix \((after.matrixBytesUploaded - before.matrixBytesUploaded) / queryCount), "
            + "query vector \((after.queryBytesUploaded - before.queryBytesUploaded) / queryCount); "
            + "all bytes copied per query incl. results: \(copied / queryCount) (the matrix is \(vectors * dim * 4))")
    report.queries = queryCount
    report.queryMilliseconds = Double(first.elapsed.nanoseconds) / 1e6
    report.matrixBytesUploadedPerQuery = (after.matrixBytesUploaded - before.matrixBytesUploaded) / queryCount
    report.bytesCopiedPerQuery = copied / queryCount
    log(
        "    query 0: \(first.answers[0].prefix(3).map { "id \($0.id) (\(String(format: "%.4f", $0.score)))" }.joined(separator: ", ")) ..."
    )

    // Deactivate: snapshot to SQLite, device memory released.
    let inUse = device.pool.statistics.bytesInUse
    t = clock.now
    try await system.deactivate(index.id)
    let deactivated = clock.now - t
    let file = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
    log(
        "  deactivated in \(ms(deactivated)): snapshot saved (\(file.map(mib) ?? "size unknown") database file), "
            + "device memory in use \(mib(inUse)) -> \(mib(device.pool.statistics.bytesInUse)), placement \(system.placement(of: index.id).map(\.description) ?? "none")"
    )

    report.deactivateMilliseconds = Double(deactivated.nanoseconds) / 1e6
    report.snapshotBytes = file

    // Reactivate from SQLite on the next call, and query again.
    t = clock.now
    let count = try await index.vectorCount()
    let reactivated = clock.now - t
    let second = try await queryAll()
    let same = first.answers == second.answers
    log(
        "  reactivated from SQLite on \(system.placement(of: index.id).map(\.description) ?? "?") with \(count) vectors in \(ms(reactivated))"
    )
    log(
        "  \(queryCount) concurrent queries again in \(ms(second.elapsed)): answers \(same ? "identical" : "DIFFERENT") to before deactivation"
    )
    report.reactivateMilliseconds = Double(reactivated.nanoseconds) / 1e6
    report.identicalAnswersAfterReactivation = same
    guard same else {
        throw GPUBridgeError.sizeMismatch(
            name: "queries answered identically after reactivation", expected: queryCount,
            actual: zip(first.answers, second.answers).filter { $0 == $1 }.count)
    }
    try await system.deactivate(index.id)

    // An actor call around a 1M-element vector add against the same request made directly through the bridge.
    let n = 1 << 20
    let a = random.floats(n), b = random.floats(n)
    let adder = try system.actor(BatchActor<FloatPair, [Float]>.self, key: "overhead")
    let pair = FloatPair(a, b), direct = Operations.VectorPair(a, b)
    // Both paths are checked against the host before they are timed.
    let expected = zip(a, b).map { $0 + $1 }
    let viaActor = try await adder.run([pair]), viaBridge = try await bridge.run(Operations.vectorAdd, direct)
    report.vectorAddVerified = viaActor == [expected] && viaBridge == expected
    if !report.vectorAddVerified {
        let actorState = viaActor == [expected] ? "correct" : "wrong"
        let directState = viaBridge == expected ? "correct" : "wrong"
        log(
            "  VERIFY FAILED: the 1M-element vector add differs from the host "
                + "(actor call: \(actorState), direct: \(directState))")
    }
    var actorTimes: [Duration] = [], directTimes: [Duration] = []
    for _ in 0..<15 {
        t = clock.now
        _ = try await adder.run([pair])
        actorTimes.append(clock.now - t)
        t = clock.now
        _ = try await bridge.run(Operations.vectorAdd, direct)
        directTimes.append(clock.now - t)
    }
    let actorMedian = actorTimes.sorted()[actorTimes.count / 2],
        directMedian = directTimes.sorted()[directTimes.count / 2]
    log(
        "  1M-element vector add (upload, launch, download), median of 15: actor call \(ms(actorMedian)), direct \(ms(directMedian)), "
            + "ratio \(String(format: "%.3f", Double(actorMedian.nanoseconds) / Double(max(1, directMedian.nanoseconds))))"
    )
    report.actorCallMilliseconds = Double(actorMedian.nanoseconds) / 1e6
    report.directCallMilliseconds = Double(directMedian.nanoseconds) / 1e6
    report.actorOverDirect = Double(actorMedian.nanoseconds) / Double(max(1, directMedian.nanoseconds))
    return report
}
