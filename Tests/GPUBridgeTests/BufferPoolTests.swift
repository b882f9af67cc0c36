import Foundation
import GPUBridge
import GPUBridgeTestSupport
import Synchronization
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
        try pool.release(first)
        let second = try pool.allocate(byteCount: 900)
        #expect(second.region == first.region)
        let s = pool.statistics
        #expect(s.hits == 1)
        #expect(s.misses == 1)
        #expect(s.segments == 1)
        try pool.release(second)
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
        try pool.release(a)
        try pool.release(c)
        #expect(pool.trim() == 0)
        // A request for 8 KiB cannot use the two 4 KiB holes (not adjacent) but fits the tail.
        let d = try pool.allocate(byteCount: 8 * kib)
        #expect(d.region.offset == c.region.offset)  // c's hole merged with the free tail
        try pool.release(d)
        // Free the middle: everything merges into one free chunk covering the segment.
        try pool.release(b)
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
        try pool.release(big)
        try pool.release(small)
        let fit = try pool.allocate(byteCount: 2000)
        #expect(fit.region == small.region)
        let next = try pool.allocate(byteCount: 5000)
        #expect(next.region.offset == big.region.offset)
        for block in [pin1, pin2, fit, next] { try pool.release(block) }
        #expect(pool.statistics.bytesInUse == 0)
    }

    @Test("limit reached -> trim -> retry -> clear error; statistics exact")
    func limit() throws {
        let backend = CPUBackend()
        let pool = try BufferPool(backend: backend, limit: 4 * mib)
        try pool.release(try pool.allocate(byteCount: 2 * mib))  // a 2 MiB segment, now cached
        #expect(pool.statistics.bytesCached == 2 * mib)
        let three = try pool.allocate(byteCount: 3 * mib)  // does not fit the cache; 2 + 3 > 4: trim, then allocate
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
        try pool.release(three)
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
        try pool.release(try pool.allocate(byteCount: 2 * mib))
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
        try pool.release(block)
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

    @Test("concurrent misses never reserve past the limit")
    func concurrentMissesRespectTheLimit() throws {
        // Each allocation call stalls 20 ms in the driver, so 16 threads are inside it at once: a pool that checks
        // the limit, drops its lock and then calls the driver lets all of them through (16 x 8 MiB under 64 MiB).
        let backend = FaultInjectingBackend(
            wrapping: CPUBackend(ordinal: 11), plan: .init(stalls: [.allocate: .init(.milliseconds(20))]))
        let pool = try BufferPool(backend: backend, limit: 64 * mib)
        let blocks = Mutex<[PoolBlock]>([])
        let refusals = Mutex<[GPUBridgeError]>([])
        let threads = 16
        let done = DispatchGroup()
        for _ in 0..<threads {
            done.enter()
            Thread.detachNewThread {
                do {
                    let block = try pool.allocate(byteCount: 8 * mib)
                    blocks.withLock { $0.append(block) }
                } catch let error as GPUBridgeError {
                    refusals.withLock { $0.append(error) }
                } catch {
                    Issue.record("unexpected \(error)")
                }
                done.leave()
            }
        }
        done.wait()
        let granted = blocks.withLock { $0 }
        let refused = refusals.withLock { $0 }
        #expect(backend.peakOutstandingBytes <= 64 * mib)
        #expect(pool.statistics.bytesReserved <= 64 * mib)
        #expect(granted.count == 8)
        #expect(refused.count == threads - 8)
        for error in refused {
            guard case let .outOfMemory(_, requested, _, _, limit, _) = error else {
                Issue.record("expected outOfMemory, got \(error)"); continue
            }
            #expect(requested == 8 * mib && limit == 64 * mib)
        }
        for block in granted { try pool.release(block) }
        #expect(pool.statistics.bytesInUse == 0)
        #expect(pool.trim() == 64 * mib)
        #expect(backend.outstandingBytes == 0)
    }

    @Test("a block released twice is refused and the pool stays exact")
    func doubleRelease() throws {
        let pool = try BufferPool(backend: CPUBackend())
        let block = try pool.allocate(byteCount: 4 * kib)
        try pool.release(block)
        let error = bridgeError { try pool.release(block) }
        guard case let .invalidArgument(name, _, limit) = error else {
            Issue.record("expected invalidArgument, got \(String(describing: error))"); return
        }
        #expect(name == "block")
        #expect(limit.contains("released already"))
        var s = pool.statistics
        #expect(s.bytesInUse == 0 && s.blocksInUse == 0)
        // Two allocations of the same size get two different blocks (a block listed twice would be handed out twice).
        let first = try pool.allocate(byteCount: 4 * kib)
        let second = try pool.allocate(byteCount: 4 * kib)
        #expect(first.region != second.region)
        s = pool.statistics
        #expect(s.blocksInUse == 2 && s.bytesInUse == 8 * kib)
        // The same after the block went through the merged free lists, and for a block this pool never handed out.
        try pool.release(first)
        try pool.release(second)
        #expect(pool.trim() == BufferPool.smallSegmentSize)
        #expect(bridgeError { try pool.release(first) } != nil)
        let foreign = try BufferPool(backend: CPUBackend()).allocate(byteCount: 512)
        #expect(bridgeError { try pool.release(foreign) } != nil)
        s = pool.statistics
        #expect(s.bytesInUse == 0 && s.blocksInUse == 0 && s.bytesReserved == 0)
    }
}
