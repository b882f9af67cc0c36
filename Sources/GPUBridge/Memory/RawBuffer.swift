import Tracing

/// Owns one pool block, and returns it to the pool when the last buffer or view over it goes away; or keeps borrowed
/// host memory alive (`Device.borrowBuffer`), which goes back to no pool.
final class BlockOwner: Sendable {
    /// The pool the block came from; nil for borrowed memory.
    let pool: BufferPool?
    let block: PoolBlock
    /// What owns borrowed bytes (an array, whose storage they are), held as long as any buffer over them.
    let lender: (any Sendable)?

    init(pool: BufferPool, block: PoolBlock) {
        self.pool = pool
        self.block = block
        self.lender = nil
    }

    init(borrowing region: DeviceRegion, from lender: any Sendable) {
        self.pool = nil
        self.block = PoolBlock(region: region, requestedBytes: region.byteCount)
        self.lender = lender
    }

    // The owner is the block's one holder and releases it once, so the pool cannot refuse it.
    deinit { if let pool { try? pool.release(block) } }
}

/// Untyped device memory: a whole pooled allocation or a view (offset + length) of one.
///
/// Ownership: a buffer owns its pool block through a shared owner; a view holds the same owner and its parent, so the
/// memory lives as long as any buffer or view over it. When the last one goes, the block returns to its device's
/// `BufferPool` (no driver call happens in `deinit`). Any thread or task may use a buffer; ordering of reads and
/// writes to its contents is the caller's business, as with any device memory.
public final class RawBuffer: Sendable, CustomStringConvertible {
    /// The device that owns the memory.
    public let device: Device
    let owner: BlockOwner
    /// The buffer this view was made from, or nil for a whole allocation.
    public let parent: RawBuffer?
    /// Byte offset of this buffer within its pool block.
    public let offset: Int
    /// Length in bytes.
    public let byteCount: Int

    init(device: Device, owner: BlockOwner, parent: RawBuffer?, offset: Int, byteCount: Int) {
        self.device = device
        self.owner = owner
        self.parent = parent
        self.offset = offset
        self.byteCount = byteCount
    }

    deinit {
        if parent != nil { device.backend.regionRetired(region) }
    }

    /// The device memory this buffer covers: the allocation's real native handle, offset and length.
    public var region: DeviceRegion { owner.block.region.slice(offset: offset, byteCount: byteCount) }

    /// The allocation's native handle: a `CUdeviceptr`, a `cl_mem` or a host address. Read-only; never invented.
    public var handle: UInt64 { owner.block.region.handle }

    /// Where the first byte is, for backends that address memory as pointer + offset (CUDA, CPU): `handle` plus the
    /// byte offset. For OpenCL the handle is an object, and the offset is applied with a sub-buffer.
    public var address: UInt64 { handle &+ UInt64(owner.block.region.offset + offset) }

    /// Whether this buffer is a view of another.
    public var isView: Bool { parent != nil }

    /// Whether the bytes are borrowed from an array (`Device.borrowBuffer`): kernels may only read them, through
    /// parameters declared `.readOnly`, and nothing may copy or fill into them.
    package var isReadOnly: Bool { owner.pool == nil }

    /// Throws unless this buffer may be written.
    private func checkWritable(_ name: String) throws(GPUBridgeError) {
        guard !isReadOnly else {
            throw .invalidArgument(
                name: name, value: "\(self), read-only memory borrowed from an array",
                limit: "a buffer allocated on \(device.id)")
        }
    }

    /// A view of `byteCount` bytes starting `offset` bytes into this buffer. It keeps this buffer's memory alive and
    /// can be passed to kernels; the offset must meet the device's view alignment (1 on CPU and CUDA; OpenCL's base
    /// address alignment).
    public func view(offset: Int, byteCount: Int) throws(GPUBridgeError) -> RawBuffer {
        try checkRange(name: "view", offset: offset, length: byteCount, limit: self.byteCount)
        guard byteCount > 0 else {
            throw .invalidArgument(name: "byteCount", value: String(byteCount), limit: "1...\(self.byteCount - offset)")
        }
        let alignment = device.info.capabilities.viewOffsetAlignment
        let absolute = owner.block.region.offset + self.offset + offset
        if alignment > 1, absolute % alignment != 0 {
            throw .invalidArgument(
                name: "offset", value: "\(offset) (absolute \(absolute))",
                limit: "multiples of \(alignment) bytes, the view alignment of \(device.id)")
        }
        return RawBuffer(device: device, owner: owner, parent: self, offset: self.offset + offset, byteCount: byteCount)
    }

    // MARK: Copies

    /// Copies `source` into this buffer at `offset` and returns when done (blocks the calling thread like
    /// `cudaMemcpy`; use `enqueueCopy(from:HostBuffer...)` for asynchronous work).
    public func copy(from source: UnsafeRawBufferPointer, toOffset offset: Int = 0) throws(GPUBridgeError) {
        try checkWritable("destination")
        try checkRange(name: "destination", offset: offset, length: source.count, limit: byteCount)
        guard source.count > 0 else { return }
        try traced(SpanNames.copy, attributes: { copyAttributes(&$0, direction: "to_device", bytes: source.count) }) {
            () throws(GPUBridgeError) in
            try device.retryingAfterTrim("a copy into \(self)") { () throws(GPUBridgeError) in
                try device.backend.copy(from: source, to: region.slice(offset: offset, byteCount: source.count))
            }
        }
        device.metrics.bytesCopied.increment(by: source.count)
    }

    /// Copies `destination.count` bytes from this buffer at `offset` into `destination`; returns when done.
    public func copy(to destination: UnsafeMutableRawBufferPointer, fromOffset offset: Int = 0) throws(GPUBridgeError) {
        try checkRange(name: "source", offset: offset, length: destination.count, limit: byteCount)
        guard destination.count > 0 else { return }
        try traced(SpanNames.copy, attributes: { copyAttributes(&$0, direction: "to_host", bytes: destination.count) })
        {
            () throws(GPUBridgeError) in
            try device.retryingAfterTrim("a copy from \(self)") { () throws(GPUBridgeError) in
                try device.backend.copy(
                    from: region.slice(offset: offset, byteCount: destination.count), to: destination)
            }
        }
        device.metrics.bytesCopied.increment(by: destination.count)
    }

    private func copyAttributes(_ a: inout SpanAttributes, direction: String, bytes: Int) {
        a["gpubridge.device"] = device.id.description
        a["gpubridge.copy.direction"] = direction
        a["gpubridge.copy.bytes"] = bytes
    }

    /// Enqueues a copy of `byteCount` bytes from `host` (at `hostOffset`) into this buffer (at `offset`). The host
    /// buffer is kept alive until the copy completes.
    public func enqueueCopy(from host: HostBuffer, hostOffset: Int = 0, toOffset offset: Int = 0, byteCount: Int? = nil)
        throws(GPUBridgeError) -> Completion
    {
        try checkWritable("destination")
        let length =
            byteCount ?? min(remaining(host.byteCount, after: hostOffset), remaining(self.byteCount, after: offset))
        try checkRange(name: "host", offset: hostOffset, length: length, limit: host.byteCount)
        try checkRange(name: "destination", offset: offset, length: length, limit: self.byteCount)
        try host.check(device: device)
        guard length > 0 else { return Completion(finished: .success(nil)) }
        device.metrics.bytesCopied.increment(by: length)
        return try keepAlive(
            [self],
            until: device.backend.enqueueCopy(
                from: host.allocation, offset: hostOffset, owner: host,
                to: region.slice(offset: offset, byteCount: length)))
    }

    /// Enqueues a copy of `source` into this buffer at `offset`. The bytes are copied into host memory for
    /// transfers before this returns (on CUDA a reused page-locked staging block), so `source` may be reused or freed
    /// at once; nothing is page-locked per call.
    public func enqueueCopy(copying source: UnsafeRawBufferPointer, toOffset offset: Int = 0) throws(GPUBridgeError)
        -> Completion
    {
        try checkWritable("destination")
        try checkRange(name: "destination", offset: offset, length: source.count, limit: byteCount)
        guard source.count > 0 else { return Completion(finished: .success(nil)) }
        device.metrics.bytesCopied.increment(by: source.count)
        return try keepAlive(
            [self],
            until: device.backend.enqueueCopy(
                copying: source, to: region.slice(offset: offset, byteCount: source.count)))
    }

    /// Enqueues a copy of `byteCount` bytes from this buffer (at `offset`) into `host` (at `hostOffset`). The host
    /// buffer is kept alive until the copy completes.
    public func enqueueCopy(to host: HostBuffer, hostOffset: Int = 0, fromOffset offset: Int = 0, byteCount: Int? = nil)
        throws(GPUBridgeError) -> Completion
    {
        let length =
            byteCount ?? min(remaining(host.byteCount, after: hostOffset), remaining(self.byteCount, after: offset))
        try checkRange(name: "host", offset: hostOffset, length: length, limit: host.byteCount)
        try checkRange(name: "source", offset: offset, length: length, limit: self.byteCount)
        try host.check(device: device)
        guard length > 0 else { return Completion(finished: .success(nil)) }
        device.metrics.bytesCopied.increment(by: length)
        return try keepAlive(
            [self],
            until: device.backend.enqueueCopy(
                from: region.slice(offset: offset, byteCount: length), to: host.allocation, offset: hostOffset,
                owner: host))
    }

    /// Enqueues a device-to-device copy of `byteCount` bytes from `source` (at `sourceOffset`) into this buffer
    /// (at `offset`). Both buffers must be on the same device.
    public func enqueueCopy(
        from source: RawBuffer, sourceOffset: Int = 0, toOffset offset: Int = 0, byteCount: Int? = nil
    ) throws(GPUBridgeError) -> Completion {
        guard source.device === device else {
            let names = Device.names(expected: device, actual: source.device)
            throw .wrongDevice(name: "source", expected: names.expected, actual: names.actual)
        }
        try checkWritable("destination")
        let length =
            byteCount ?? min(remaining(source.byteCount, after: sourceOffset), remaining(self.byteCount, after: offset))
        try checkRange(name: "source", offset: sourceOffset, length: length, limit: source.byteCount)
        try checkRange(name: "destination", offset: offset, length: length, limit: self.byteCount)
        guard length > 0 else { return Completion(finished: .success(nil)) }
        return try keepAlive(
            [source, self],
            until: device.backend.enqueueCopy(
                from: source.region.slice(offset: sourceOffset, byteCount: length),
                to: region.slice(offset: offset, byteCount: length)))
    }

    /// Enqueues a fill of `byteCount` bytes at `offset` with `pattern` (1, 2, 4 or 8 bytes) repeated.
    public func enqueueFill(pattern: [UInt8], offset: Int = 0, byteCount: Int? = nil) throws(GPUBridgeError)
        -> Completion
    {
        try checkWritable("destination")
        guard [1, 2, 4, 8].contains(pattern.count) else {
            throw .invalidArgument(name: "pattern.count", value: String(pattern.count), limit: "1, 2, 4 or 8 bytes")
        }
        let length = byteCount ?? remaining(self.byteCount, after: offset)
        try checkRange(name: "fill", offset: offset, length: length, limit: self.byteCount)
        guard length % pattern.count == 0 else {
            throw .invalidArgument(
                name: "byteCount", value: String(length), limit: "multiples of the pattern's \(pattern.count) bytes")
        }
        guard length > 0 else { return Completion(finished: .success(nil)) }
        return try keepAlive(
            [self],
            until: device.backend.enqueueFill(
                region.slice(offset: offset, byteCount: length),
                pattern: pattern))
    }

    /// Keeps the buffers a queued command touches alive until it has completed: a buffer dropped right after
    /// enqueueing would otherwise return its block to the pool, which could hand it out (and a later command write
    /// it) before the queued command has run. The caller holds the buffers until this returns, so the window between
    /// the backend's enqueue and the retain is covered. The enqueue runs once more after the pool is trimmed when the
    /// driver had no memory for it (`Device.retryingAfterTrim`).
    private func keepAlive(
        _ buffers: [RawBuffer], until completion: @autoclosure () throws(GPUBridgeError) -> Completion
    )
        throws(GPUBridgeError) -> Completion
    {
        let completion = try device.retryingAfterTrim("a queued copy or fill on \(self)") { () throws(GPUBridgeError) in
            try completion()
        }
        if !completion.isComplete { completion.retain(buffers) }
        return completion
    }

    public var description: String {
        "RawBuffer(\(device.id), \(byteCount) bytes at \(region)\(isView ? ", view" : ""))"
    }
}

/// What is left of `total` after `offset`, or 0 when `offset` is outside `0...total` (the range check then reports it).
/// Used for default lengths so a wild offset cannot overflow before it is checked.
@inlinable
func remaining(_ total: Int, after offset: Int) -> Int {
    offset >= 0 && offset <= total ? total - offset : 0
}

/// Throws `outOfBounds` (or `invalidArgument` for negative numbers) unless `offset..<offset+length` lies in `0..<limit`.
@inlinable
func checkRange(name: String, offset: Int, length: Int, limit: Int) throws(GPUBridgeError) {
    guard offset >= 0 else {
        throw .invalidArgument(name: "\(name) offset", value: String(offset), limit: "0...\(limit)")
    }
    guard length >= 0 else {
        throw .invalidArgument(name: "\(name) length", value: String(length), limit: "0...\(limit)")
    }
    let (end, overflow) = offset.addingReportingOverflow(length)
    guard !overflow, end <= limit else {
        throw .outOfBounds(name: name, offset: offset, length: length, limit: limit)
    }
}
