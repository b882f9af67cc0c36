import GPUBridge
import GPUBridgeTestSupport
import Testing

@Suite("Out of memory: device capacity, pool limit, trim and retry, accounting back to baseline")
struct OutOfMemoryTests {
    static let mib = 1 << 20

    @Test("a request larger than the device fails with the numbers; the pool and the device are as before")
    func largerThanDevice() async throws {
        let small = FaultInjectingBackend(wrapping: CPUBackend(), plan: .init(capacity: 8 * Self.mib))
        let device = try Device(backend: small)
        let baseline = Baseline(device)
        for bytes in [8 * Self.mib + 1, 64 * Self.mib, Int.max / 2, Int.max] {
            let error = bridgeError { try device.makeRawBuffer(byteCount: bytes) }
            guard case let .outOfMemory(name, requested, inUse, _, limit, detail) = error else {
                Issue.record("\(bytes) bytes: got \(String(describing: error))")
                continue
            }
            #expect(name == device.id.description)
            #expect(requested == bytes && inUse == 0 && limit == 8 * Self.mib)
            #expect(!detail.isEmpty)
            #expect(error?.description.contains(String(bytes)) == true)
        }
        // The device still works at its capacity.
        let whole = try device.makeBuffer(of: UInt8.self, count: 8 * Self.mib)
        try whole.copy(from: [1, 2, 3])
        #expect(try whole.toArray(count: 3) == [1, 2, 3])
        #expect(small.outstandingBytes == 8 * Self.mib)
        _ = consume whole
        await baseline.check()
        #expect(small.outstandingBytes == 0)
    }

    @Test("a request larger than the pool limit fails naming the limit; smaller ones go on working")
    func largerThanPoolLimit() async throws {
        let device = try Device(backend: CPUBackend(), poolLimit: 4 * Self.mib)
        let baseline = Baseline(device)
        let error = bridgeError { try device.makeBuffer(of: Float.self, count: Self.mib + 1) }
        guard case let .outOfMemory(_, requested, _, _, limit, detail) = error else {
            Issue.record("got \(String(describing: error))"); return
        }
        #expect(requested == 4 * (Self.mib + 1) && limit == 4 * Self.mib)
        #expect(detail.contains("pool limit"))
        #expect(device.pool.statistics.bytesReserved == 0)  // nothing was reserved for the failed request
        do {
            let ok = try device.makeBuffer(copying: [Float](repeating: 2, count: Self.mib / 2))
            #expect(try ok.toArray(offset: Self.mib / 2 - 1) == [2])
        }
        await baseline.check()
    }

    @Test("the pool limit is reached by cached memory: the pool trims and retries once, and the request succeeds")
    func trimAndRetryAtLimit() async throws {
        let device = try Device(backend: CPUBackend(), poolLimit: 8 * Self.mib)
        let baseline = Baseline(device)
        do {
            // 6 MiB cached in three 2 MiB segments of their own, then released (cached, not freed).
            for _ in 0..<2 {
                let held = try (0..<3).map { _ in try device.makeRawBuffer(byteCount: 2 * Self.mib) }
                #expect(held.count == 3)
            }
            #expect(device.pool.statistics.bytesInUse == 0 && device.pool.statistics.bytesReserved == 6 * Self.mib)
            // 4 MiB does not fit beside 6 MiB cached under an 8 MiB limit: trim, retry, succeed.
            let big = try device.makeRawBuffer(byteCount: 4 * Self.mib)
            #expect(big.byteCount == 4 * Self.mib)
            #expect(device.pool.statistics.trimsForSpace == 1)
            #expect(device.pool.statistics.bytesReserved == 4 * Self.mib)
            // With 4 MiB really in use, 6 MiB more fails after its one trim, naming what is in use.
            let error = bridgeError { try device.makeRawBuffer(byteCount: 6 * Self.mib) }
            guard case let .outOfMemory(_, requested, inUse, _, limit, detail) = error else {
                Issue.record("got \(String(describing: error))"); return
            }
            #expect(requested == 6 * Self.mib && inUse == 4 * Self.mib && limit == 8 * Self.mib)
            #expect(detail.contains("after trimming"))
            #expect(device.pool.statistics.trimsForSpace == 2)
        }
        await baseline.check()
        #expect(device.pool.statistics.bytesReserved == 0)
    }

    @Test(
        "the driver reports out-of-memory: the pool trims its cache and retries once, then reports the device's numbers"
    )
    func trimAndRetryOnDriverOOM() async throws {
        let small = FaultInjectingBackend(wrapping: CPUBackend(), plan: .init(capacity: 6 * Self.mib))
        let device = try Device(backend: small, poolLimit: 64 * Self.mib)  // the pool's limit is not what stops it
        let baseline = Baseline(device)
        do {
            _ = try device.makeRawBuffer(byteCount: 4 * Self.mib)  // released at once: 4 MiB cached
            #expect(small.outstandingBytes == 4 * Self.mib)
            // the driver refuses 5 MiB beside 4: trim, retry
            let next = try device.makeRawBuffer(byteCount: 5 * Self.mib)
            #expect(next.byteCount == 5 * Self.mib)
            #expect(device.pool.statistics.trimsForSpace == 1)
            #expect(small.outstandingBytes == 5 * Self.mib)
            let error = bridgeError { try device.makeRawBuffer(byteCount: 2 * Self.mib) }
            guard case let .outOfMemory(_, _, _, _, _, detail) = error else {
                Issue.record("got \(String(describing: error))"); return
            }
            #expect(detail.contains("device out of memory after trimming"))
        }
        await baseline.check()
        #expect(small.outstandingBytes == 0)
    }

    @Test("an injected allocation failure (not out-of-memory) is reported as it is and leaves the pool unchanged")
    func allocationFault() async throws {
        let flaky = FaultInjectingBackend(wrapping: CPUBackend(), plan: .init(calls: [.allocate: [1, 3]]))
        let device = try Device(backend: flaky)
        let baseline = Baseline(device)
        do {
            let first = bridgeError { try device.makeRawBuffer(byteCount: 100) }
            guard case .backendFailure = first else { Issue.record("got \(String(describing: first))"); return }
            #expect(device.pool.statistics.segments == 0 && device.pool.statistics.bytesInUse == 0)
            let ok = try device.makeRawBuffer(byteCount: 100)  // call 2
            _ = bridgeError { try device.makeRawBuffer(byteCount: 4 * Self.mib) }  // call 3
            #expect(ok.byteCount == 100)
        }
        await baseline.check()
    }

    @Test(
        "through the bridge: a request the first device has no memory for moves to the next; with fallback off the error says why"
    )
    func bridgeMovesOnOutOfMemory() async throws {
        let tiny = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 0), plan: .init(capacity: Self.mib))
        let bridge = try Bridge(options: options(), backends: [tiny, CPUBackend(ordinal: 1)])
        let baselines = Baselines(bridge)
        let n = 200_000  // 2.4 MB for a, b and c
        let a = (0..<n).map(Float.init), b = [Float](repeating: 1, count: n)
        // With its footprint declared, the broker never sends it to the device without room.
        #expect(try await bridge.run(Operations.vectorAdd, .init(a, b))[n - 1] == Float(n))
        #expect(tiny.calls(.allocate) == 0)

        // Without a footprint the broker cannot tell: the least loaded device (the tiny one, while a slot is held on
        // the other) runs out of memory after its pool's trim and retry, and the request moves on.
        // It uploads a and b as on a discrete device (`Operations.vectorAdd` reads them in place on the CPU backend),
        // so the tiny device's pool holds them when c does not fit.
        let unsized = Operation<Operations.VectorPair, [Float]>(name: "vector-add", kernels: ["vector_add"]) {
            context, input throws(GPUBridgeError) in
            let device = context.device
            let a = try device.makeBuffer(copying: input.a), b = try device.makeBuffer(copying: input.b)
            let c = try device.makeBuffer(of: Float.self, count: input.a.count)
            try await device.launch(
                try context.kernel("vector_add"), .covering(input.a.count),
                arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(Int32(input.a.count))])
            return try c.toArray()
        }
        let busy = try #require(await bridge.broker.acquire(backends: [.cpu], excluding: [tiny.info.id]))
        let c = try await bridge.run(unsized, .init(a, b))
        bridge.broker.release(busy, succeeded: true)
        #expect(c.count == n && c[n - 1] == Float(n))
        #expect(bridge.devices[0].pool.statistics.trimsForSpace >= 1)
        #expect(bridge.broker.states[1].succeeded >= 2, "\(bridge.broker.states)")
        // An out-of-memory attempt goes straight to the next device: one failure on the tiny device, no retry there.
        #expect(bridge.broker.states[0].failed == 1, "\(bridge.broker.states)")
        await baselines.check()

        let alone = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 0), plan: .init(capacity: Self.mib))
        let strict = try Bridge(options: options { $0.fallback = false }, backends: [alone])
        let strictBaselines = Baselines(strict)
        let error = await bridgeError { try await strict.run(unsized, .init(a, b)) }
        guard case let .allAttemptsFailed(_, attempts) = error else {
            Issue.record("got \(String(describing: error))"); return
        }
        #expect(attempts.allSatisfy { $0.hasPrefix("cpu:0 attempt") && $0.contains("out of memory") }, "\(attempts)")
        #expect(attempts.count == 1, "\(attempts)")
        await strictBaselines.check()
        #expect(alone.outstandingBytes == 0)
    }
}
