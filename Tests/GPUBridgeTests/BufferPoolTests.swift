import GPUBridge
import GPUBridgeTestSupport
import Testing

@Suite("Buffer pool")
struct BufferPoolTests {
    let kib = 1024
    let mib = 1024 * 1024

    @Test("a freed block is reused")
    func reuse() throws {
        let pool = try BufferPool(backend: CPUBackend())
        let first = try pool.allocate(byteCount: 1000)
        #expect(first.region.byteCount == 1024)  // rounded to 512
        #expect(first.requestedBytes == 1000)
        pool.release(first)
        let second = try pool.allocate(byteCount: 900)
        #expect(second.region == first.region)
        let s = pool.statistics
        #expect(s.hits == 1)
        #expect(s.misses == 1)
        #expect(s.segments == 1)
        pool.release(second)
    }

    @Test("blocks split a segment and merge back when freed, in any order")
    func splitAndMerge() throws {
        let backend = CPUBackend()
        let pool = try BufferPool(backend: backend)
        let a = try pool.allocate(byteCount: 4 * kib)
        let b = try pool.allocate(byteCount: 4 * kib)
        let c = try pool.allocate(byteCount: 4 * kib)
        // One segment, carved in order.
        #expect(a.region.handle == b.region.handle && b.region.handle == c.region.handle)
        #expect(b.region.offset == a.region.offset + 4 * kib)
        #expect(c.region.offset == b.region.offset + 4 * kib)
        #expect(pool.statistics.segments == 1)
        #expect(pool.statistics.bytesReserved == BufferPool.smallSegmentSize)
        #expect(pool.statistics.bytesInUse == 12 * kib)

        // Free the outer two; the middle one pins the segment.
        pool.release(a)
        pool.release(c)
        #expect(pool.trim() == 0)
        // A request for 8 KiB cannot use the two 4 KiB holes (not adjacent) but fits the tail.
        let d = try pool.allocate(byteCount: 8 * kib)
        #expect(d.region.offset == c.region.offset)  // c's hole merged with the free tail
        pool.release(d)
        // Free the middle: everything merges into one free chunk covering the segment.
        pool.release(b)
        #expect(pool.statistics.bytesInUse == 0)
        #expect(pool.trim() == BufferPool.smallSegmentSize)
        #expect(pool.statistics.segments == 0)
        #expect(pool.statistics.bytesReserved == 0)
        #expect(backend.counters.allocations == backend.counters.frees)
    }

    @Test("best fit picks the smallest free chunk that fits")
    func bestFit() throws {
        let pool = try BufferPool(backend: CPUBackend())
        let big = try pool.allocate(byteCount: 8 * kib)
        let pin1 = try pool.allocate(byteCount: 512)
        let small = try pool.allocate(byteCount: 2 * kib)
        let pin2 = try pool.allocate(byteCount: 512)
        pool.release(big)
        pool.release(small)
        let fit = try pool.allocate(byteCount: 2000)
        #expect(fit.region == small.region)
        let next = try pool.allocate(byteCount: 5000)
        #expect(next.region.offset == big.region.offset)
        for block in [pin1, pin2, fit, next] { pool.release(block) }
        #expect(pool.statistics.bytesInUse == 0)
    }

    @Test("limit reached -> trim -> retry -> clear error; statistics exact")
    func limit() throws {
        let backend = CPUBackend()
        let pool = try BufferPool(backend: backend, limit: 4 * mib)
        pool.release(try pool.allocate(byteCount: 2 * mib))  // a 2 MiB segment, now cached
        #expect(pool.statistics.bytesCached == 2 * mib)
        let three = try pool.allocate(byteCount: 3 * mib)   // does not fit the cache; 2 + 3 > 4: trim, then allocate
        var s = pool.statistics
        #expect(s.trimsForSpace == 1)
        #expect(s.bytesReserved == 3 * mib)
        #expect(s.bytesInUse == 3 * mib)
        #expect(s.bytesCached == 0)
        #expect(s.peakBytesInUse == 3 * mib)
        #expect(s.misses == 2)
        #expect(s.hits == 0)
        #expect(s.blocksInUse == 1)

        let error = bridgeError { try pool.allocate(byteCount: 2 * mib) }
        guard case let .outOfMemory(_, requested, inUse, cached, limit, _) = error else {
            Issue.record("expected outOfMemory, got \(String(describing: error))"); return
        }
        #expect(requested == 2 * mib)
        #expect(inUse == 3 * mib)
        #expect(cached == 0)
        #expect(limit == 4 * mib)
        #expect(error?.description.contains("requested 2097152 bytes with 3145728 bytes in use") == true)
        s = pool.statistics
        #expect(s.trimsForSpace == 2)
        #expect(s.bytesInUse == 3 * mib)
        pool.release(three)
        #expect(pool.trim() == 3 * mib)
        #expect(backend.counters.allocations == 2)
        #expect(backend.counters.frees == 2)

        let tooBig = bridgeError { try pool.allocate(byteCount: 5 * mib) }
        #expect(tooBig?.description.contains("limit 4194304") == true)
    }

    @Test("driver out-of-memory -> trim -> retry once")
    func driverOutOfMemory() throws {
        let backend = FaultInjectingBackend(wrapping: CPUBackend(ordinal: 7), plan: .init(capacity: 4 * mib))
        let pool = try BufferPool(backend: backend, limit: 64 * mib)  // the device, not the pool limit, is in the way
        pool.release(try pool.allocate(byteCount: 2 * mib))
        let block = try pool.allocate(byteCount: 3 * mib)  // driver refuses, pool trims the cached 2 MiB, retries
        #expect(pool.statistics.trimsForSpace == 1)
        #expect(pool.statistics.bytesReserved == 3 * mib)
        let error = bridgeError { try pool.allocate(byteCount: 2 * mib) }
        guard case let .outOfMemory(_, requested, inUse, _, _, detail) = error else {
            Issue.record("expected outOfMemory, got \(String(describing: error))"); return
        }
        #expect(requested == 2 * mib)
        #expect(inUse == 3 * mib)
        #expect(detail.contains("device out of memory"))
        pool.release(block)
        #expect(pool.statistics.bytesInUse == 0)
    }

    @Test("buffers return their blocks to the pool; a device allocation of the same size is a hit")
    func throughDevice() throws {
        let device = try makeCPUDevice()
        do {
            let a = try device.makeBuffer(of: Float.self, count: 1000)
            _ = a
        }
        let s1 = device.pool.statistics
        #expect(s1.bytesInUse == 0)
        #expect(s1.misses == 1)
        let b = try device.makeBuffer(of: Float.self, count: 1000)
        #expect(device.pool.statistics.hits == 1)
        #expect(device.counters.allocations == 1)
        _ = b
    }

    @Test("invalid limits and sizes are refused")
    func invalid() throws {
        #expect(bridgeError { try BufferPool(backend: CPUBackend(), limit: 0) } != nil)
        let pool = try BufferPool(backend: CPUBackend(), limit: mib)
        #expect(bridgeError { try pool.allocate(byteCount: 0) } != nil)
        #expect(bridgeError { try pool.allocate(byteCount: Int.max) } != nil)
        #expect(pool.statistics.bytesReserved == 0)
    }
}
