import GPUBridge
import GPUBridgeActors

extension Suites {
    /// Many small vector additions as one request: concatenated, one `vector_add` launch, split back.
    static let coalescedVectorAdd = Operation<[FloatPair], [[Float]]>(
        name: "vector-add-coalesced", kernels: ["vector_add"],
        footprint: { pairs in pairs.reduce(0) { $0 + 12 * $1.a.count } }
    ) { context, pairs throws(GPUBridgeError) in
        var a: [Float] = [], b: [Float] = [], bounds: [Range<Int>] = []
        for pair in pairs {
            guard pair.a.count == pair.b.count else {
                throw .sizeMismatch(name: "b.count", expected: pair.a.count, actual: pair.b.count)
            }
            bounds.append(a.count..<a.count + pair.a.count)
            a += pair.a
            b += pair.b
        }
        let c = try await Operations.vectorAdd.run(.init(a, b), on: context.device, catalog: context.catalog)
        return bounds.map { Array(c[$0]) }
    }

    /// Actor call overhead against the same request made directly, and many small requests through a batch actor
    /// one launch each against the same requests coalesced into one launch.
    func actors(_ device: Device) async throws -> [Figure] {
        var options = BridgeOptions()
        options.cacheDirectory = nil
        options.backendOrder = [device.id.backend]
        let bridge = try Bridge(options: options, backends: [device.backend])
        let system = try EmbeddedActorSystem(bridge: bridge, storage: InMemoryActorStorage())
        try system.register(BatchActor<FloatPair, [Float]>.self, as: "vector-add") {
            BatchActor(actorSystem: $0, operation: ActorOperations.vectorAdd, maxInFlight: 8)
        }
        try system.register(BatchActor<[FloatPair], [[Float]]>.self, as: "vector-add-coalesced") {
            BatchActor(actorSystem: $0, operation: Suites.coalescedVectorAdd, maxInFlight: 1)
        }
        var values = SplitMix64(seed: 11)
        let n = size ?? (1 << 20)
        let pair = FloatPair(values.floats(n), values.floats(n))
        let direct = Operations.VectorPair(pair.a, pair.b)
        let expected = zip(pair.a, pair.b).map { $0 + $1 }
        let adder = try system.actor(BatchActor<FloatPair, [Float]>.self, key: "overhead")

        progress.say("actor call vs direct on \(device.id)")
        var actorOK = true, directOK = true
        // Interleaved, so both see the same machine state.
        var actorSamples: [Duration] = [], directSamples: [Duration] = []
        let clock = ContinuousClock()
        _ = try await adder.run([pair])
        _ = try await bridge.run(Operations.vectorAdd, direct)
        for _ in 0..<max(repeats, 10) {
            var t = clock.now
            actorOK = try await adder.run([pair])[0] == expected && actorOK
            actorSamples.append(clock.now - t)
            t = clock.now
            directOK = try await bridge.run(Operations.vectorAdd, direct) == expected && directOK
            directSamples.append(clock.now - t)
        }
        let ms: (Double) -> Double = { $0 * 1e3 }
        let actorFigure = figure(
            "actors", "actor call, vector add \(n)", device: device, unit: "ms", size: n, sizeUnit: "elements",
            samples: actorSamples, verified: actorOK, note: "upload, launch, download", rate: ms)
        let directFigure = figure(
            "actors", "direct bridge.run, vector add \(n)", device: device, unit: "ms", size: n, sizeUnit: "elements",
            samples: directSamples, verified: directOK, rate: ms)
        let overhead = ratio(actorFigure, over: directFigure, name: "actor / direct", note: "target <= 1.10")

        progress.say("actor batching on \(device.id)")
        let requests = 10_000
        let small = (0..<requests).map { i in
            FloatPair((0..<16).map { Float(i + $0) }, [Float](repeating: 1, count: 16))
        }
        let want = small.map { $0.a.map { $0 + 1 } }
        let coalesced = try system.actor(BatchActor<[FloatPair], [[Float]]>.self, key: "coalesced")
        var oneOK = true, batchedOK = true
        let one = try await sample(repeats: max(1, repeats / 5)) { oneOK = try await adder.run(small) == want && oneOK }
        let batched = try await sample(repeats: max(1, repeats / 5)) {
            batchedOK = try await coalesced.run([small])[0] == want && batchedOK
        }
        let perSecond: (Double) -> Double = { Double(requests) / $0 }
        let oneFigure = figure(
            "actors", "batch actor, one launch per request", device: device, unit: "requests/s", size: requests,
            sizeUnit: "requests", samples: one, verified: oneOK, rate: perSecond)
        let batchedFigure = figure(
            "actors", "batch actor, requests coalesced", device: device, unit: "requests/s", size: requests,
            sizeUnit: "requests", samples: batched, verified: batchedOK, rate: perSecond)
        let coalescing = ratio(batchedFigure, over: oneFigure, name: "coalesced / one per request")
        _ = await system.shutdown()
        return [actorFigure, directFigure, overhead, oneFigure, batchedFigure, coalescing]
    }
}
