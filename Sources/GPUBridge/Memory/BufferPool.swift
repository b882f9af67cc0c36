import Logging
import Synchronization

/// A block of device memory handed out by a `BufferPool`: a region of one of the pool's segments.
public struct PoolBlock: Sendable, Hashable {
    /// The region: the segment's native handle, the block's offset in it and its (rounded) length.
    public let region: DeviceRegion
    /// The length the caller asked for (at most `region.byteCount`).
    public let requestedBytes: Int
}

/// A caching allocator for one device, in front of the backend's allocator.
///
/// - Sizes are rounded up to the backend's granularity (at least 512 bytes, like CuPy).
/// - Requests up to 1 MiB are carved from 2 MiB segments; larger ones get a segment of their own size.
/// - A request takes the best-fitting free chunk (the smallest that fits) and splits off the rest; a released block
///   merges with free neighbours in its segment, so fragments coalesce. The last 64 released blocks are kept
///   unmerged by exact size, so the common allocate-release-allocate of one size is O(1); they are merged before any
///   best-fit search and before trimming.
/// - `limit` caps the bytes the pool reserves from the driver. When a request would pass it, or the driver reports
///   out-of-memory, the pool releases its cached segments (`trim()`) and retries once, then throws `outOfMemory`
///   with what was asked, what is in use, what is cached and the limit.
///
/// Thread safety: all methods may be called from any thread; state is guarded by one lock, and driver calls are made
/// outside it. Cost: a hit is a few dictionary operations under the lock (well under a microsecond); a miss costs one
/// driver allocation.
public final class BufferPool: Sendable {
    /// Counters and gauges of a pool, exact at the moment they are read.
    public struct Statistics: Sendable, Hashable, Codable {
        /// Bytes in blocks handed out (rounded sizes).
        public var bytesInUse: Int = 0
        /// Bytes reserved from the driver but not handed out.
        public var bytesCached: Int { bytesReserved - bytesInUse }
        /// Bytes reserved from the driver (all segments).
        public var bytesReserved: Int = 0
        /// Highest `bytesInUse` seen.
        public var peakBytesInUse: Int = 0
        /// Blocks handed out right now.
        public var blocksInUse: Int = 0
        /// Segments reserved from the driver right now.
        public var segments: Int = 0
        /// Requests served from cached memory.
        public var hits: Int = 0
        /// Requests that needed a new segment from the driver.
        public var misses: Int = 0
        /// Times the cache was trimmed to satisfy a request (limit or driver out-of-memory).
        public var trimsForSpace: Int = 0
    }

    private struct ChunkKey: Hashable {
        let segment: UInt64
        let offset: Int
    }

    private struct Chunk {
        var size: Int
        var free: Bool
        /// Released by its user and kept unmerged in `recent` (still `free == false` for the free lists).
        var recent = false
    }

    private struct State {
        var segments: [UInt64: Int] = [:]
        /// Every chunk (free or used) by its start.
        var chunks: [ChunkKey: Chunk] = [:]
        /// Start offset of the chunk that ends at a given offset (for merging with the previous chunk).
        var chunkEnding: [ChunkKey: Int] = [:]
        /// Free chunks by size, and the distinct free sizes in ascending order.
        var bins: [Int: [ChunkKey]] = [:]
        var freeSizes: [Int] = []
        var stats = Statistics()
        /// Bytes of segments being allocated from the driver right now: counted against the limit before the driver
        /// call, so concurrent misses cannot together pass it.
        var reserving = 0
        /// Recently released small blocks by exact size, not yet merged: a request of the same rounded size takes one
        /// back in O(1). Flushed into the free lists (and merged) before any best-fit search and before trimming.
        var recent: [Int: [ChunkKey]] = [:]
        var recentCount = 0

        /// Merges every recently released block into the free lists.
        mutating func flushRecent() {
            guard recentCount > 0 else { return }
            for (_, keys) in recent { for key in keys { _ = give(key) } }
            recent.removeAll(keepingCapacity: true)
            recentCount = 0
        }

        /// Takes a recently released block of exactly `size` bytes, if there is one.
        mutating func takeRecent(_ size: Int, requested: Int) -> PoolBlock? {
            guard recentCount > 0, var stack = recent[size], let key = stack.popLast() else { return nil }
            recent[size] = stack
            recentCount -= 1
            chunks[key]?.recent = false
            return handOut(key, requested: requested, hit: true)
        }

        mutating func addFree(_ key: ChunkKey, size: Int) {
            chunks[key] = Chunk(size: size, free: true)
            chunkEnding[ChunkKey(segment: key.segment, offset: key.offset + size)] = key.offset
            if bins[size, default: []].isEmpty {
                bins[size] = [key]
                freeSizes.insert(size, at: lowerBound(size))
            } else {
                bins[size]!.append(key)
            }
        }

        mutating func removeFree(_ key: ChunkKey, size: Int) {
            guard var bin = bins[size], let i = bin.lastIndex(of: key) else { return }
            bin.remove(at: i)
            if bin.isEmpty {
                bins[size] = nil
                let at = lowerBound(size)
                if at < freeSizes.count, freeSizes[at] == size { freeSizes.remove(at: at) }
            } else {
                bins[size] = bin
            }
        }

        func lowerBound(_ size: Int) -> Int {
            var lo = 0, hi = freeSizes.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if freeSizes[mid] < size { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }

        /// Takes the best-fitting free chunk for `size`, splitting off the rest; nil if none fits.
        mutating func take(_ size: Int, granularity: Int) -> ChunkKey? {
            let at = lowerBound(size)
            guard at < freeSizes.count else { return nil }
            let chunkSize = freeSizes[at]
            guard let key = bins[chunkSize]?.last else { return nil }
            removeFree(key, size: chunkSize)
            chunkEnding[ChunkKey(segment: key.segment, offset: key.offset + chunkSize)] = nil
            let rest = chunkSize - size
            if rest >= granularity {
                chunks[key] = Chunk(size: size, free: false)
                chunkEnding[ChunkKey(segment: key.segment, offset: key.offset + size)] = key.offset
                addFree(ChunkKey(segment: key.segment, offset: key.offset + size), size: rest)
            } else {
                chunks[key] = Chunk(size: chunkSize, free: false)
                chunkEnding[ChunkKey(segment: key.segment, offset: key.offset + chunkSize)] = key.offset
            }
            return key
        }

        /// Returns a used chunk to the free lists, merging it with free neighbours.
        mutating func give(_ key: ChunkKey) -> Int {
            guard let chunk = chunks[key], !chunk.free else { return 0 }  // callers pass used or recent chunks
            let released = chunk.size
            var start = key.offset
            var size = chunk.size
            chunkEnding[ChunkKey(segment: key.segment, offset: start + size)] = nil
            chunks[key] = nil
            // Merge with the next chunk.
            let nextKey = ChunkKey(segment: key.segment, offset: start + size)
            if let next = chunks[nextKey], next.free {
                removeFree(nextKey, size: next.size)
                chunks[nextKey] = nil
                chunkEnding[ChunkKey(segment: key.segment, offset: start + size + next.size)] = nil
                size += next.size
            }
            // Merge with the previous chunk.
            if let prevStart = chunkEnding[ChunkKey(segment: key.segment, offset: start)] {
                let prevKey = ChunkKey(segment: key.segment, offset: prevStart)
                if let prev = chunks[prevKey], prev.free {
                    removeFree(prevKey, size: prev.size)
                    chunks[prevKey] = nil
                    chunkEnding[ChunkKey(segment: key.segment, offset: start)] = nil
                    start = prevStart
                    size += prev.size
                }
            }
            addFree(ChunkKey(segment: key.segment, offset: start), size: size)
            return released
        }

        mutating func handOut(_ key: ChunkKey, requested: Int, hit: Bool) -> PoolBlock {
            let size = chunks[key]!.size  // `take` just recorded it
            stats.bytesInUse += size
            stats.blocksInUse += 1
            stats.peakBytesInUse = max(stats.peakBytesInUse, stats.bytesInUse)
            if hit { stats.hits += 1 } else { stats.misses += 1 }
            return PoolBlock(
                region: DeviceRegion(handle: key.segment, offset: key.offset, byteCount: size),
                requestedBytes: requested)
        }

        /// Removes every segment that is entirely free and returns them.
        mutating func takeFreeSegments() -> [(UInt64, Int)] {
            var out: [(UInt64, Int)] = []
            for (segment, size) in segments {
                let key = ChunkKey(segment: segment, offset: 0)
                if let chunk = chunks[key], chunk.free, chunk.size == size {
                    removeFree(key, size: size)
                    chunks[key] = nil
                    chunkEnding[ChunkKey(segment: segment, offset: size)] = nil
                    out.append((segment, size))
                }
            }
            for (segment, size) in out {
                segments[segment] = nil
                stats.bytesReserved -= size
                stats.segments -= 1
            }
            return out
        }
    }

    /// The backend whose memory this pool manages.
    public let backend: any DeviceBackend
    /// Largest number of bytes the pool reserves from the driver.
    public let limit: Int
    /// Rounding unit for sizes and split points.
    public let granularity: Int
    /// Requests up to this size share segments of `smallSegmentSize`.
    public static let smallRequestLimit = 1 << 20
    public static let smallSegmentSize = 2 << 20
    /// Most released small blocks kept unmerged for O(1) reuse.
    public static let recentLimit = 64

    private let state = Mutex(State())
    private let logger = Logger(label: "gpubridge.pool")
    private let metrics: PoolMetrics

    /// A pool in front of `backend`. `limit` defaults to the device's total memory.
    public init(backend: any DeviceBackend, limit: Int? = nil) throws(GPUBridgeError) {
        self.backend = backend
        let total = backend.info.totalMemory
        let limit = limit ?? total
        guard limit > 0 else {
            throw .invalidArgument(name: "poolLimit", value: String(limit), limit: "1...\(Int.max) bytes")
        }
        self.limit = limit
        var g = max(512, backend.allocationGranularity)
        // Round the granularity up to a power of two so rounding is a mask.
        if g & (g - 1) != 0 { g = 1 << (Int.bitWidth - (g - 1).leadingZeroBitCount) }
        self.granularity = g
        self.metrics = PoolMetrics(device: backend.info.id.description)
    }

    /// Current statistics.
    public var statistics: Statistics { state.withLock { $0.stats } }

    /// Rounds `byteCount` up to the pool's granularity, or nil on overflow.
    @inlinable
    public func roundedSize(_ byteCount: Int) -> Int? {
        let (sum, overflow) = byteCount.addingReportingOverflow(granularity - 1)
        return overflow ? nil : sum & ~(granularity - 1)
    }

    /// Hands out a block of at least `byteCount` bytes.
    public func allocate(byteCount: Int) throws(GPUBridgeError) -> PoolBlock {
        guard byteCount > 0 else {
            throw .invalidArgument(name: "byteCount", value: String(byteCount), limit: "1...\(limit) bytes")
        }
        guard let size = roundedSize(byteCount), size <= limit else {
            throw outOfMemory(requested: byteCount, detail: "request larger than the pool limit")
        }
        // Fast path: a recently released block of the same size, else the best-fitting cached chunk.
        if let block = state.withLock({ s -> PoolBlock? in
            if let recent = s.takeRecent(size, requested: byteCount) { return recent }
            s.flushRecent()
            guard let key = s.take(size, granularity: granularity) else { return nil }
            return s.handOut(key, requested: byteCount, hit: true)
        }) {
            metrics.hits.increment()
            return block
        }
        metrics.misses.increment()
        return try allocateSegment(for: size, requested: byteCount)
    }

    private func allocateSegment(for size: Int, requested: Int) throws(GPUBridgeError) -> PoolBlock {
        var trimmed = false
        while true {
            // Decide the segment size and reserve it against the limit under the lock, before the driver call, so
            // concurrent misses cannot together pass the limit; trim once if the limit is in the way.
            let segmentSize = state.withLock { s -> Int? in
                let committed = s.stats.bytesReserved + s.reserving
                guard committed <= limit, size <= limit - committed else { return nil }
                var segmentSize = size
                if size <= Self.smallRequestLimit {
                    segmentSize = max(size, min(Self.smallSegmentSize, limit - committed))
                }
                s.reserving += segmentSize
                return segmentSize
            }
            guard let segmentSize else {
                if trimmed {
                    throw outOfMemory(requested: requested, detail: "pool limit reached after trimming the cache")
                }
                trimmed = true
                trimForSpace()
                // Memory may have been freed by others in the meantime: try the cache again.
                if let block = state.withLock({ s -> PoolBlock? in
                    s.flushRecent()
                    guard let key = s.take(size, granularity: granularity) else { return nil }
                    return s.handOut(key, requested: requested, hit: true)
                }) {
                    return block
                }
                continue
            }
            let handle: UInt64
            do {
                handle = try backend.allocate(byteCount: segmentSize)
            } catch {
                state.withLock { $0.reserving -= segmentSize }
                if case .outOfMemory = error, !trimmed {
                    trimmed = true
                    logger.debug(
                        "driver out of memory; trimming the pool and retrying", metadata: ["requested": "\(requested)"])
                    trimForSpace()
                    continue
                }
                if case let .outOfMemory(_, _, _, _, _, detail) = error {
                    logger.warning(
                        "allocation failed after trimming",
                        metadata: ["requested": "\(requested)", "device": "\(backend.info.id)"])
                    throw outOfMemory(
                        requested: requested, detail: "device out of memory after trimming the cache: \(detail)")
                }
                throw error
            }
            metrics.bytesAllocated.increment(by: segmentSize)
            return state.withLock { s in
                s.reserving -= segmentSize
                s.segments[handle] = segmentSize
                s.stats.bytesReserved += segmentSize
                s.stats.segments += 1
                s.addFree(ChunkKey(segment: handle, offset: 0), size: segmentSize)
                let key = s.take(size, granularity: granularity)!  // the segment was just added and fits
                return s.handOut(key, requested: requested, hit: false)
            }
        }
    }

    /// Returns a block to the pool. The memory is cached, not freed; `trim()` frees it.
    ///
    /// Throws `invalidArgument` and changes nothing when the block is not in use: released already (a second release
    /// would put it in the reuse lists twice, so two later allocations would share memory), never handed out by this
    /// pool, or not matching the block that was handed out there.
    public func release(_ block: PoolBlock) throws(GPUBridgeError) {
        let key = ChunkKey(segment: block.region.handle, offset: block.region.offset)
        let size = block.region.byteCount
        // First claim the block (marked released, but not yet reusable), then let the backend drop per-region objects
        // (an OpenCL sub-buffer), and only then make the block available: a new owner of the same region must not
        // have its sub-buffer dropped by this release.
        let accepted = state.withLock { s -> Bool in
            guard let chunk = s.chunks[key], !chunk.free, !chunk.recent, chunk.size == size else { return false }
            s.chunks[key]?.recent = true
            s.stats.bytesInUse -= size
            s.stats.blocksInUse -= 1
            return true
        }
        guard accepted else {
            logger.error(
                "refused the release of a block that is not in use",
                metadata: ["block": "\(block.region)", "device": "\(backend.info.id)"])
            throw .invalidArgument(
                name: "block", value: "\(block.region)",
                limit: "a block of this pool that is in use (it was released already, or never handed out here)")
        }
        backend.regionRetired(block.region)
        state.withLock { s in
            if s.recentCount < Self.recentLimit {
                s.recent[size, default: []].append(key)
                s.recentCount += 1
            } else {
                _ = s.give(key)
            }
        }
    }

    /// Frees every cached segment that holds no block in use; returns the bytes given back to the driver.
    @discardableResult
    public func trim() -> Int {
        let segments = state.withLock { s -> [(UInt64, Int)] in
            s.flushRecent()
            return s.takeFreeSegments()
        }
        var bytes = 0
        for (handle, size) in segments {
            backend.free(handle: handle, byteCount: size)
            bytes += size
        }
        if bytes > 0 { logger.debug("trimmed pool", metadata: ["bytes": "\(bytes)", "device": "\(backend.info.id)"]) }
        return bytes
    }

    /// Trims the cache because something needed device memory (an allocation here, or a module load or launch that
    /// the driver could not give memory to); counted in `trimsForSpace`. Returns the bytes given back.
    @discardableResult
    func trimForSpace() -> Int {
        state.withLock { $0.stats.trimsForSpace += 1 }
        return trim()
    }

    /// `outOfMemory` with this pool's figures (in use, cached, limit) at this moment.
    func outOfMemory(requested: Int, detail: String) -> GPUBridgeError {
        let s = statistics
        return .outOfMemory(
            device: backend.info.id.description, requested: requested, inUse: s.bytesInUse,
            cached: s.bytesCached, limit: limit, detail: detail)
    }

    deinit {
        // Whatever is cached goes back to the driver; blocks still in use keep the pool alive, so none are left.
        let segments = state.withLock { s -> [(UInt64, Int)] in
            s.flushRecent()
            return s.takeFreeSegments()
        }
        for (handle, size) in segments { backend.free(handle: handle, byteCount: size) }
    }
}
