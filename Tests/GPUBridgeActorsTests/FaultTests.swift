import Distributed
import GPUBridge
import GPUBridgeActors
import GPUBridgeTestSupport
import Testing

@Suite("Device faults under actors")
struct FaultTests {
    @Test("vector index: its device fails mid-call, the matrix moves to the next device and the query is answered")
    func indexFallsBack() async throws {
        let failing = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 0))
        let system = try makeSystem([failing, CPUBackend(ordinal: 1)]) { $0.backendOrder = [.cpu] }
        try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 32) }
        let index = try system.actor(VectorIndexActor.self, key: "faulty")
        var random = SplitMix64(seed: 5)
        let rows = random.floats(300 * 32, -1, 1), ids = Array(0..<300)
        try await index.upsert(ids: ids, vectors: rows)
        #expect(system.placement(of: index.id) == DeviceID(backend: .cpu, ordinal: 0))
        let queries = random.floats(4 * 32, -1, 1)
        let healthy = try await index.query(queries, k: 8)

        failing.setPlan(.init(always: [.launch]))
        let moved = try await index.query(queries, k: 8)
        #expect(moved == healthy)
        #expect(failing.injected(.launch) == 2)  // attemptsPerDevice, then the move
        #expect(system.placement(of: index.id) == DeviceID(backend: .cpu, ordinal: 1))
        #expect(try await index.stats().migrations == 1)
        // Still usable: writes and queries go to the new device.
        try await index.upsert(ids: [1_000], vectors: Array(queries[0..<32]))
        #expect(try await index.query(Array(queries[0..<32]), k: 1)[0][0].id == 1_000)
    }

    @Test("vector index with fallback off: the call fails naming each attempt; the index works once the device heals")
    func indexFailsClearly() async throws {
        let failing = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 0))
        let system = try makeSystem([failing, CPUBackend(ordinal: 1)]) {
            $0.backendOrder = [.cpu]
            $0.fallback = false
        }
        try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 8) }
        let index = try system.actor(VectorIndexActor.self, key: "strict")
        try await index.upsert(ids: [1, 2], vectors: [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        failing.setPlan(.init(always: [.launch]))
        let error = await #expect(throws: GPUBridgeError.self) {
            try await index.query([1, 0, 0, 0, 0, 0, 0, 0], k: 1)
        }
        guard case let .allAttemptsFailed(operation, attempts) = error else {
            Issue.record("got \(String(describing: error))"); return
        }
        #expect(operation == "vector-index query")
        #expect(attempts.count == 2 && attempts.allSatisfy { $0.hasPrefix("cpu:0 attempt") })
        failing.setPlan(.init())
        #expect(try await index.query([1, 0, 0, 0, 0, 0, 0, 0], k: 1) == [[VectorHit(id: 1, score: 1)]])
        #expect(system.placement(of: index.id) == DeviceID(backend: .cpu, ordinal: 0))
    }

    @Test(
        "batch actor: a failing device falls back through the Bridge; without fallback the call fails and the actor stays usable"
    )
    func batchFallsBack() async throws {
        let failing = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 0), plan: .init(always: [.launch]))
        let system = try makeSystem([failing, CPUBackend(ordinal: 1)]) { $0.backendOrder = [.cpu] }
        try system.register(VectorAddActor.self, as: "add") {
            VectorAddActor(actorSystem: $0, operation: ActorOperations.vectorAdd, maxInFlight: 2)
        }
        let actor = try system.actor(VectorAddActor.self, key: "f")
        #expect(try await actor.run([FloatPair([1, 2], [3, 4]), FloatPair([5], [6])]) == [[4, 6], [11]])
        #expect(failing.injected(.launch) >= 2)

        let strict = try makeSystem([failing]) {
            $0.backendOrder = [.cpu]; $0.fallback = false
        }
        try strict.register(VectorAddActor.self, as: "add") {
            VectorAddActor(actorSystem: $0, operation: ActorOperations.vectorAdd, maxInFlight: 2)
        }
        let lonely = try strict.actor(VectorAddActor.self, key: "f")
        await #expect(throws: GPUBridgeError.self) { try await lonely.run([FloatPair([1], [2])]) }
        failing.setPlan(.init())
        // The broker may have opened the device's circuit; wait for its probe interval rather than assume.
        let healed = await eventually(timeout: .seconds(15)) { (try? await lonely.run([FloatPair([1], [2])])) == [[3]] }
        #expect(healed)
    }
}
