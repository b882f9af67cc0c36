import Distributed
import GPUBridge
import GPUBridgeActors
import Testing

@Suite("Virtual actors: directory, activation, idle deactivation, storage")
struct ActivationTests {
    @Test("1 000 concurrent first calls to one key create exactly one instance and one activation")
    func oneActivation() async throws {
        let system = try makeSystem([CPUBackend()])
        try system.register(VectorIndexActor.self, as: "index") {
            VectorIndexActor(actorSystem: $0, dim: 8, initialCapacity: 16)
        }
        let id = GPUActorID(type: "index", key: "hot")
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<1000 {
                group.addTask { try await VectorIndexActor.resolve(id: id, using: system).vectorCount() }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(counts.count == 1000 && counts.allSatisfy { $0 == 0 })
        #expect(system.instanceCount(of: id) == 1)
        #expect(system.activationCount(of: id) == 1)
        #expect(system.placement(of: id) == system.bridge.devices[0].id)
        // Other keys are other activations.
        _ = try await system.actor(VectorIndexActor.self, key: "cold").vectorCount()
        #expect(system.activationCount(of: GPUActorID(type: "index", key: "cold")) == 1)
        #expect(system.placements.count == 2)
    }

    @Test("an idle activation is deactivated (device memory released) and the next call restores it from SQLite")
    func idleDeactivationAndRestore() async throws {
        let (path, cleanup) = temporaryDatabase()
        defer { cleanup() }
        let storage = try SQLiteActorStorage(path: path)
        let system = try makeSystem([CPUBackend()], storage: storage, idle: .milliseconds(300))
        try system.register(VectorIndexActor.self, as: "index") {
            VectorIndexActor(actorSystem: $0, dim: 16, initialCapacity: 64)
        }
        let pool = system.bridge.devices[0].pool
        let baseline = pool.statistics.bytesInUse
        let index = try system.actor(VectorIndexActor.self, key: "tenant-7")
        let id = index.id

        var random = SplitMix64(seed: 11)
        let vectors = random.floats(200 * 16, -1, 1)
        try await index.upsert(ids: Array(1000..<1200), vectors: vectors)
        try await index.delete(ids: [1003, 1100])
        let queries = random.floats(3 * 16, -1, 1)
        let before = try await index.query(queries, k: 7)
        let order = try await index.idsInRowOrder()
        #expect(pool.statistics.bytesInUse > baseline)
        #expect(system.placement(of: id) != nil)

        // No call for 300 ms: the idle timer deactivates it.
        #expect(await eventually { system.placement(of: id) == nil })
        #expect(pool.statistics.bytesInUse == baseline)
        #expect(try await storage.status(of: id).snapshot?.id.sequence == 2)  // the upsert and the delete
        #expect(system.activationCount(of: id) == 1)

        // The next call activates again from the database file; same rows in the same order, same answers.
        let after = try await index.query(queries, k: 7)
        #expect(after == before)
        #expect(try await index.idsInRowOrder() == order)
        #expect(try await index.vectorCount() == 198)
        #expect(system.activationCount(of: id) == 2)

        // A second process (a new system on the same file) sees the same state.
        try await system.deactivate(id)
        let other = try makeSystem([CPUBackend()], storage: try SQLiteActorStorage(path: path))
        try other.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 16) }
        #expect(try await other.actor(VectorIndexActor.self, key: "tenant-7").query(queries, k: 7) == before)
    }

    @Test("calls keep an activation alive; each call re-arms the idle timer")
    func callsKeepItActive() async throws {
        // The claim holds over a window in which the caller called at least every idle/2 for 2.5 idle timeouts. The
        // caller shares the cooperative threads with the suites running beside it (the 1 000-actor stress suite can
        // hold them for seconds), so a window where a call came late proves nothing either way; such a window is
        // discarded and another one taken, for up to 90 s. At least one window must be clean.
        let idle = Duration.seconds(2)
        let system = try makeSystem([CPUBackend()], idle: idle)
        try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 4) }
        let index = try system.actor(VectorIndexActor.self, key: "busy")
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(90)
        var checked = false
        while !checked, clock.now < deadline {
            _ = try await index.vectorCount()
            let before = system.activationCount(of: index.id)
            let start = clock.now
            var last = start
            var longestGap = Duration.zero
            while clock.now - start < idle * 2.5 {
                try await Task.sleep(for: .milliseconds(50))  // pacing of the caller, far under the idle timeout
                _ = try await index.vectorCount()
                longestGap = max(longestGap, clock.now - last)
                last = clock.now
            }
            guard longestGap < idle / 2 else { continue }
            // Checked right after a call: a deactivation between two calls would have made a call activate again.
            #expect(system.activationCount(of: index.id) == before)
            checked = true
        }
        #expect(checked, "no 5 s window without a call gap of 1 s or more within 90 s")
        #expect(system.placement(of: index.id) != nil)
    }

    @Test("an id nobody registered fails clearly; a wrong type fails clearly; registration is checked")
    func unresolvable() async throws {
        let system = try makeSystem([CPUBackend()])
        try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 4) }
        #expect(throws: GPUBridgeError.self) {
            try VectorIndexActor.resolve(id: GPUActorID(type: "nope", key: "x"), using: system)
        }
        do {
            _ = try VectorIndexActor.resolve(id: GPUActorID(type: "nope", key: "x"), using: system)
        } catch let error as GPUBridgeError {
            #expect("\(error)".contains("nope/x"))
        }
        #expect(throws: GPUBridgeError.self) {
            try system.register(VectorIndexActor.self, as: "again") { VectorIndexActor(actorSystem: $0, dim: 4) }
        }
        #expect(throws: GPUBridgeError.self) {
            try system.register(StreamActor.self, as: "index") { StreamActor(actorSystem: $0, kernel: .scale(by: 1)) }
        }
        // A bad dim fails every call with the argument, value and limit; the actor stays inactive.
        try system.register(StreamActor.self, as: "stream") { StreamActor(actorSystem: $0, kernel: .scale(by: 1)) }
        let bad = try makeSystem([CPUBackend()])
        try bad.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 0) }
        await #expect(throws: GPUBridgeError.invalidArgument(name: "dim", value: "0", limit: "1...65536")) {
            try await bad.actor(VectorIndexActor.self, key: "k").vectorCount()
        }
    }

    @Test("with serializeLocalCalls every call goes through remoteCall (encoded, executed on the local instance)")
    func loopbackSerialization() async throws {
        var options = ActorSystemOptions()
        options.serializeLocalCalls = true
        let system = try EmbeddedActorSystem(
            bridge: try makeBridge([CPUBackend()]), storage: InMemoryActorStorage(), options: options)
        try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 8) }
        let proxy = try system.actor(VectorIndexActor.self, key: "wire")
        #expect(__isRemoteActor(proxy))
        var random = SplitMix64(seed: 3)
        let rows = random.floats(50 * 8, -1, 1)
        #expect(try await proxy.upsert(ids: Array(0..<50), vectors: rows) == 50)
        let queries = random.floats(2 * 8, -1, 1)
        let hits = try await proxy.query(queries, k: 5)
        #expect(compare(hits, queries: queries, rows: rows, ids: Array(0..<50), dim: 8, k: 5).isEmpty)
        // Errors thrown by the callee come back as they are.
        await #expect(throws: GPUBridgeError.invalidArgument(name: "k", value: "0", limit: "1...1024")) {
            try await proxy.query(queries, k: 0)
        }
        #expect(system.activationCount(of: proxy.id) == 1)
    }
}
