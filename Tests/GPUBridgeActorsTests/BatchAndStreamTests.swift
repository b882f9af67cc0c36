import Distributed
import GPUBridge
import GPUBridgeActors
import Testing

typealias VectorAddActor = BatchActor<FloatPair, [Float]>

@Suite("Batch and stream actors")
struct BatchAndStreamTests {
    @Test("batch actor: results in input order")
    func batchOrder() async throws {
        let system = try makeSystem([CPUBackend()])
        try system.register(VectorAddActor.self, as: "add") {
            VectorAddActor(actorSystem: $0, operation: ActorOperations.vectorAdd, maxInFlight: 3)
        }
        let actor = try system.actor(VectorAddActor.self, key: "order")
        let inputs = (0..<40).map { i in
            FloatPair([Float](repeating: Float(i), count: 10 + i), [Float](repeating: 0.5, count: 10 + i))
        }
        let outputs = try await actor.run(inputs)
        #expect(outputs.count == 40)
        #expect(outputs.enumerated().allSatisfy { i, c in c == [Float](repeating: Float(i) + 0.5, count: 10 + i) })
        #expect(try await actor.inFlight().maxInFlight <= 3)
        await #expect(throws: GPUBridgeError.self) { try await actor.run([FloatPair([1, 2], [1])]) }
        #expect(try await actor.run([FloatPair([1], [2])]) == [[3]])
    }

    @Test("batch actor: a producer 100x faster than the device never has more than the bound in flight")
    func backPressure() async throws {
        let system = try makeSystem([CPUBackend()])
        let bound = 4
        try system.register(VectorAddActor.self, as: "add") {
            VectorAddActor(actorSystem: $0, operation: ActorOperations.vectorAdd, maxInFlight: bound)
        }
        let actor = try system.actor(VectorAddActor.self, key: "pressure")
        let n = 1 << 20
        let a = [Float](repeating: 1, count: n), b = [Float](repeating: 2, count: n)
        let items = 48

        // The producer's own pace: how long it takes to make an item when nobody waits for it.
        let clock = ContinuousClock()
        let pulls = PullCounter()
        let producer = CountingSequence(limit: nil, make: { _ in FloatPair(a, b) }, pulls: pulls)
        var iterator = producer.makeAsyncIterator()
        let producerStart = clock.now
        for _ in 0..<10_000 { _ = try await iterator.next() }
        let perProduced = (clock.now - producerStart) / 10_000

        let counted = PullCounter()
        let start = clock.now
        let outputs = try await actor.whenLocal { local in
            try await local.process(CountingSequence(limit: items, make: { _ in FloatPair(a, b) }, pulls: counted))
        }
        let perProcessed = (clock.now - start) / items
        let stats = try await actor.inFlight()
        #expect(outputs?.count == items)
        #expect(outputs?.allSatisfy { $0.count == n && $0.first == 3 && $0.last == 3 } == true)
        #expect(perProcessed >= perProduced * 100, "producer \(perProduced) per item, device \(perProcessed) per item")
        #expect(stats.maxInFlight <= bound)
        #expect(stats.maxInFlight == bound, "the bound was reached: \(stats.maxInFlight)")
        #expect(stats.inFlight == 0 && counted.count == items)
    }

    @Test("stream actor: results in input order, micro-batched; a fast producer is held back by a bounded buffer")
    func streamOrder() async throws {
        let system = try makeSystem([CPUBackend()])
        try system.register(StreamActor.self, as: "stream") {
            StreamActor(actorSystem: $0, kernel: .scale(by: 2), maxBatch: 32, maxBatchFloats: 4096, bufferLimit: 16)
        }
        let actor = try system.actor(StreamActor.self, key: "order")
        let pulls = PullCounter()
        let input = CountingSequence(limit: 2000, make: { i in [Float(i), Float(i) + 0.25, -Float(i)] }, pulls: pulls)
        let results = try #require(await actor.whenLocal { $0.stream(input) })
        var i = 0
        for try await r in results {
            #expect(r == [2 * Float(i), 2 * Float(i) + 0.5, -2 * Float(i)], "element \(i)")
            i += 1
        }
        #expect(i == 2000)
        let stats = try await actor.statistics()
        #expect(stats.resultsEmitted == 2000 && stats.elementsPulled == 2000)
        #expect(stats.batches < 2000, "micro-batches: \(stats.batches)")
        #expect(stats.maxQueued <= 16 && stats.maxBuffered <= 16)
        #expect(try await eventually { try await actor.statistics().activeStreams == 0 })
    }

    @Test("stream actor: cancelling the consumer stops the work and releases the staging memory")
    func streamCancellation() async throws {
        let system = try makeSystem([CPUBackend()])
        try system.register(StreamActor.self, as: "stream") {
            StreamActor(actorSystem: $0, kernel: .scale(by: 3), maxBatch: 8, maxBatchFloats: 1 << 16, bufferLimit: 8)
        }
        let pool = system.bridge.devices[0].pool
        let baseline = pool.statistics.bytesInUse
        let actor = try system.actor(StreamActor.self, key: "cancel")
        let pulls = PullCounter()
        let endless = CountingSequence(limit: nil, make: { i in [Float](repeating: Float(i), count: 64) }, pulls: pulls)
        let results = try #require(await actor.whenLocal { $0.stream(endless) })
        let consumer = Task {
            var taken = 0
            for try await r in results {
                #expect(r.first == 3 * Float(taken))
                taken += 1
                if taken == 100 { #expect(pool.statistics.bytesInUse > baseline) }
            }
            return taken
        }
        #expect(try await eventually { try await actor.statistics().resultsEmitted >= 200 })
        consumer.cancel()
        _ = await consumer.result
        #expect(try await eventually { try await actor.statistics().activeStreams == 0 })
        #expect(pool.statistics.bytesInUse == baseline)
        let stopped = pulls.count
        try await Task.sleep(for: .milliseconds(100))  // real time for a runaway producer to show itself
        #expect(pulls.count == stopped, "the producer is not pulled after cancellation")
        let stats = try await actor.statistics()
        // Bounded: what was pulled but not emitted fits in the queue, one micro-batch and the result buffer.
        #expect(stats.elementsPulled - stats.resultsEmitted <= 8 + 8 + 8 + 1)
    }
}
