import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeOpenCL
import Testing

/// Discovered once per process: the OpenCL devices (PoCL in CI).
enum Machine {
    static let openCL: [any DeviceBackend] = OpenCLBackendProvider().discover().devices
    static var hasOpenCL: Bool { !openCL.isEmpty }
}

func makeBridge(_ backends: [any DeviceBackend], configure: (inout BridgeOptions) -> Void = { _ in }) throws -> Bridge {
    var options = BridgeOptions()
    options.cacheDirectory = nil
    options.backendOrder = [.opencl, .cpu]
    configure(&options)
    return try Bridge(options: options, backends: backends)
}

func makeSystem(
    _ backends: [any DeviceBackend], storage: any ActorStorage = InMemoryActorStorage(),
    idle: Duration = .seconds(600), configure: (inout BridgeOptions) -> Void = { _ in }
) throws -> EmbeddedActorSystem {
    var options = ActorSystemOptions()
    options.idleTimeout = idle
    return try EmbeddedActorSystem(
        bridge: try makeBridge(backends, configure: configure), storage: storage, options: options)
}

/// A fresh database file in the temporary folder, removed (with its WAL files) by `cleanup`.
func temporaryDatabase() -> (path: String, cleanup: @Sendable () -> Void) {
    let path = NSTemporaryDirectory() + "gpubridge-actors-\(UUID().uuidString).sqlite"
    return (
        path,
        {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
    )
}

/// Polls `condition` until it holds or `timeout` passes (for effects of real timers and background tasks).
func eventually(timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// Checks index answers against `HostReference.topK` over the same rows in row order: scores within 1e-4, ids equal
/// except where the true scores of the two candidates are within 1e-5 (a near-tie may order either way in float32).
func compare(_ got: [[VectorHit]], queries: [Float], rows: [Float], ids: [Int], dim: Int, k: Int) -> [String] {
    let want = HostReference.topK(queries: queries, matrix: rows, dim: dim, k: min(k, ids.count))
    var failures: [String] = []
    for q in want.indices {
        guard got[q].count == want[q].count else {
            failures.append("query \(q): \(got[q].count) hits, want \(want[q].count)"); continue
        }
        for (j, w) in want[q].enumerated() {
            let g = got[q][j]
            if abs(Double(g.score) - w.score) > 1e-4 {
                failures.append("query \(q) rank \(j): score \(g.score), want \(w.score)")
            }
            if g.id != ids[w.index] {
                let other = want[q].first { ids[$0.index] == g.id }
                if other == nil || abs(other!.score - w.score) > 1e-5 {
                    failures.append("query \(q) rank \(j): id \(g.id), want \(ids[w.index]) (score \(w.score))")
                }
            }
        }
    }
    return failures
}

/// A pull-based producer: element i is made when the consumer asks for it (counted), so its pace is the consumer's.
struct CountingSequence<Element: Sendable>: AsyncSequence, Sendable {
    typealias Failure = any Error
    let limit: Int?
    let make: @Sendable (Int) -> Element
    let pulls: PullCounter

    struct AsyncIterator: AsyncIteratorProtocol {
        let parent: CountingSequence
        var index = 0
        mutating func next() async throws -> Element? {
            if let limit = parent.limit, index >= limit { return nil }
            try Task.checkCancellation()
            defer { index += 1 }
            parent.pulls.increment()
            return parent.make(index)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(parent: self) }
}

import Synchronization

final class PullCounter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}
