import GPUBridge
import Synchronization

/// Page-locked host blocks of one device, reused for copies from and to pageable memory.
///
/// The driver copies pageable memory synchronously (it stages it itself and, for device-to-host, waits for the
/// stream), which would block the caller inside the lane's submission lock, and `cuMemHostAlloc` per copy
/// synchronizes the device. Instead, a copy from pageable memory is first copied (by the CPU) into one or more of
/// these blocks and then enqueued as a true asynchronous DMA; a copy into pageable memory lands in blocks and the
/// lane's completion thread copies it out before completing. Blocks come in power-of-two sizes from 64 KiB to
/// `CUDAStagingPool.chunkBytes`; larger copies use several. Up to `cacheLimit` bytes of free blocks are kept for
/// reuse; beyond that a returned block is freed (`cuMemFreeHost`, on the housekeeping thread).
///
/// Ownership: the device's runtime holds the pool; every `CUDAStagingBlock` holds the pool until it comes back.
/// Thread safety: any thread; one lock around the free lists, driver calls outside it. Cost: a reuse is a lock and
/// an array pop; a new block is one `cuMemHostAlloc` (about a millisecond per MiB the first time).
final class CUDAStagingPool: Sendable {
    /// The largest block; longer copies are split into blocks of this size.
    static let chunkBytes = 16 << 20
    /// The smallest block.
    static let minimumBytes = 64 << 10

    let cacheLimit: Int
    private let driver: CUDADriver
    private let health: CUDAHealth
    private let release: @Sendable (@escaping @Sendable () -> Void) -> Void
    private let free = Mutex<(blocks: [Int: [UInt]], bytes: Int)>(([:], 0))

    /// `release` runs a job on the device's housekeeping thread.
    init(
        driver: CUDADriver, health: CUDAHealth, cacheLimit: Int = 256 << 20,
        release: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void
    ) {
        self.driver = driver
        self.health = health
        self.cacheLimit = cacheLimit
        self.release = release
    }

    deinit {
        // On the housekeeping thread, where the context is current; it ends after its queued jobs.
        trim()
    }

    /// Bytes of free blocks kept for reuse.
    var cachedBytes: Int { free.withLock { $0.bytes } }

    /// The block size used for `byteCount` bytes (at most `chunkBytes`).
    static func blockSize(for byteCount: Int) -> Int {
        var size = minimumBytes
        while size < byteCount && size < chunkBytes { size <<= 1 }
        return size
    }

    /// Blocks that hold `byteCount` bytes together, each `used` bytes long in order. The context must be current.
    func take(byteCount: Int) throws(GPUBridgeError) -> [CUDAStagingBlock] {
        var blocks: [CUDAStagingBlock] = []
        var remaining = byteCount
        while remaining > 0 {
            let used = min(remaining, Self.chunkBytes)
            blocks.append(try take(used: used))
            remaining -= used
        }
        return blocks
    }

    private func take(used: Int) throws(GPUBridgeError) -> CUDAStagingBlock {
        let size = Self.blockSize(for: used)
        let reused = free.withLock { state -> UInt? in
            guard let address = state.blocks[size]?.popLast() else { return nil }
            state.bytes -= size
            return address
        }
        if let reused { return CUDAStagingBlock(pool: self, address: reused, size: size, used: used) }
        var pointer: UnsafeMutableRawPointer?
        var status = driver.cuMemHostAlloc(&pointer, size, CU.memHostAllocPortable)
        if status == CU.errorOutOfMemory, trim() > 0 {
            status = driver.cuMemHostAlloc(&pointer, size, CU.memHostAllocPortable)
        }
        guard status == CU.success, let pointer else {
            throw health.failure(status, "cuMemHostAlloc(\(size) bytes of staging memory)")
        }
        return CUDAStagingBlock(pool: self, address: UInt(bitPattern: pointer), size: size, used: used)
    }

    /// Keeps a returned block for reuse, or frees it when the cache is full.
    func giveBack(address: UInt, size: Int) {
        let kept = free.withLock { state -> Bool in
            guard state.bytes + size <= cacheLimit else { return false }
            state.blocks[size, default: []].append(address)
            state.bytes += size
            return true
        }
        guard !kept else { return }
        let driver = driver
        release { _ = driver.cuMemFreeHost(UnsafeMutableRawPointer(bitPattern: address)) }
    }

    /// Frees every cached block (on the housekeeping thread); returns the bytes.
    @discardableResult
    func trim() -> Int {
        let (blocks, bytes) = free.withLock { state -> ([UInt], Int) in
            defer { state = ([:], 0) }
            return (state.blocks.values.flatMap { $0 }, state.bytes)
        }
        let driver = driver
        if !blocks.isEmpty {
            release { for address in blocks { _ = driver.cuMemFreeHost(UnsafeMutableRawPointer(bitPattern: address)) } }
        }
        return bytes
    }
}

/// One page-locked staging block, lent by a `CUDAStagingPool` for one copy; goes back when released.
///
/// Ownership: the copy's `Completion` holds it until the device is done with it. Thread safety: its memory is
/// written by the thread that enqueues (host-to-device) or read by the completion thread (device-to-host), never both.
final class CUDAStagingBlock: Sendable {
    let pool: CUDAStagingPool
    /// The block's host address.
    let address: UInt
    /// The block's size.
    let size: Int
    /// The bytes of this copy it holds (at most `size`).
    let used: Int

    init(pool: CUDAStagingPool, address: UInt, size: Int, used: Int) {
        self.pool = pool
        self.address = address
        self.size = size
        self.used = used
    }

    var pointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }

    deinit { pool.giveBack(address: address, size: size) }
}
