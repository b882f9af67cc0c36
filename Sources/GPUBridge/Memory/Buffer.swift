/// Typed device memory: a thin view of a `RawBuffer` as `count` elements of `Element`.
///
/// A value type; copies share the same device memory. Offsets and counts are in elements. See `RawBuffer` for
/// ownership and threading.
public struct Buffer<Element: BitwiseCopyable>: Sendable, CustomStringConvertible {
    /// The untyped memory.
    public let raw: RawBuffer

    /// Wraps `raw`; its length must be a whole number of elements.
    public init(_ raw: RawBuffer) throws(GPUBridgeError) {
        guard raw.byteCount % MemoryLayout<Element>.stride == 0 else {
            throw .sizeMismatch(
                name: "byteCount % stride of \(Element.self)", expected: 0,
                actual: raw.byteCount % MemoryLayout<Element>.stride)
        }
        self.raw = raw
    }

    init(unchecked raw: RawBuffer) { self.raw = raw }

    /// Number of elements.
    public var count: Int { raw.byteCount / MemoryLayout<Element>.stride }
    /// Length in bytes.
    public var byteCount: Int { raw.byteCount }
    /// The device that owns the memory.
    public var device: Device { raw.device }
    /// The device memory covered: real native handle, byte offset, length.
    public var region: DeviceRegion { raw.region }

    /// A view of `count` elements starting at element `offset`. Keeps this buffer's memory alive.
    public func view(offset: Int, count: Int) throws(GPUBridgeError) -> Buffer<Element> {
        let (byteOffset, byteCount) = try bytes(offset: offset, count: count, name: "view")
        guard count > 0 else {
            throw .invalidArgument(name: "count", value: String(count), limit: "1...\(max(0, self.count - offset))")
        }
        return Buffer(unchecked: try raw.view(offset: byteOffset, byteCount: byteCount))
    }

    /// Copies `count` elements of `source` (from element `sourceOffset`) into this buffer at element `offset`;
    /// returns when done. `count` defaults to the rest of `source`.
    public func copy(from source: [Element], sourceOffset: Int = 0, toOffset offset: Int = 0, count: Int? = nil)
        throws(GPUBridgeError)
    {
        let n = count ?? remaining(source.count, after: sourceOffset)
        try checkRange(name: "source array", offset: sourceOffset, length: n, limit: source.count)
        let (byteOffset, byteCount) = try bytes(offset: offset, count: n, name: "destination")
        let result = source.withUnsafeBytes { bytes -> Result<Void, GPUBridgeError> in
            let start = bytes.baseAddress.map { $0 + sourceOffset * MemoryLayout<Element>.stride }
            return Result { () throws(GPUBridgeError) in
                try raw.copy(from: UnsafeRawBufferPointer(start: start, count: byteCount), toOffset: byteOffset)
            }
        }
        try result.get()
    }

    /// Copies `count` elements from this buffer (at element `offset`) into `destination` at element
    /// `destinationOffset`; returns when done. `count` defaults to what fits.
    public func copy(
        to destination: inout [Element], destinationOffset: Int = 0, fromOffset offset: Int = 0, count: Int? = nil
    ) throws(GPUBridgeError) {
        let n =
            count ?? min(remaining(destination.count, after: destinationOffset), remaining(self.count, after: offset))
        try checkRange(name: "destination array", offset: destinationOffset, length: n, limit: destination.count)
        let (byteOffset, byteCount) = try bytes(offset: offset, count: n, name: "source")
        let result = destination.withUnsafeMutableBytes { bytes -> Result<Void, GPUBridgeError> in
            let start = bytes.baseAddress.map { $0 + destinationOffset * MemoryLayout<Element>.stride }
            return Result { () throws(GPUBridgeError) in
                try raw.copy(to: UnsafeMutableRawBufferPointer(start: start, count: byteCount), fromOffset: byteOffset)
            }
        }
        try result.get()
    }

    /// Reads the whole buffer (or `count` elements from `offset`) into a new array.
    public func toArray(offset: Int = 0, count: Int? = nil) throws(GPUBridgeError) -> [Element] {
        let n = count ?? remaining(self.count, after: offset)
        let (byteOffset, byteCount) = try bytes(offset: offset, count: n, name: "source")
        var failure: GPUBridgeError?
        let result = [Element](unsafeUninitializedCapacity: n) { out, initialized in
            let outcome = Result { () throws(GPUBridgeError) in
                try raw.copy(to: UnsafeMutableRawBufferPointer(out), fromOffset: byteOffset)
            }
            if case let .failure(error) = outcome {
                failure = error
                initialized = 0
            } else {
                initialized = n
            }
        }
        _ = byteCount
        if let failure { throw failure }
        return result
    }

    /// Copies `source` into this buffer asynchronously: the array is first copied into host memory for transfers
    /// (on CUDA a reused page-locked staging block; nothing is page-locked per call), so the caller may drop or change
    /// it as soon as this returns; the returned completion keeps that host memory until the device has it.
    public func enqueueCopy(from source: [Element], toOffset offset: Int = 0) throws(GPUBridgeError) -> Completion {
        let (byteOffset, byteCount) = try bytes(offset: offset, count: source.count, name: "destination")
        guard byteCount > 0 else { return Completion(finished: .success(nil)) }
        let result = source.withUnsafeBytes { bytes -> Result<Completion, GPUBridgeError> in
            Result { () throws(GPUBridgeError) in try raw.enqueueCopy(copying: bytes, toOffset: byteOffset) }
        }
        return try result.get()
    }

    /// Enqueues a copy of `count` elements from `host` (at element `hostOffset`) into this buffer (at `offset`).
    public func enqueueCopy(from host: HostBuffer, hostOffset: Int = 0, toOffset offset: Int = 0, count: Int? = nil)
        throws(GPUBridgeError) -> Completion
    {
        let stride = MemoryLayout<Element>.stride
        let n =
            count ?? min(remaining(host.byteCount / stride, after: hostOffset), remaining(self.count, after: offset))
        let (byteOffset, byteCount) = try bytes(offset: offset, count: n, name: "destination")
        let (hostByteOffset, _) = try bytes(offset: hostOffset, count: 0, name: "host", limit: host.byteCount / stride)
        return try raw.enqueueCopy(from: host, hostOffset: hostByteOffset, toOffset: byteOffset, byteCount: byteCount)
    }

    /// Enqueues a copy of `count` elements from this buffer (at element `offset`) into `host` (at `hostOffset`).
    public func enqueueCopy(to host: HostBuffer, hostOffset: Int = 0, fromOffset offset: Int = 0, count: Int? = nil)
        throws(GPUBridgeError) -> Completion
    {
        let stride = MemoryLayout<Element>.stride
        let n =
            count ?? min(remaining(host.byteCount / stride, after: hostOffset), remaining(self.count, after: offset))
        let (byteOffset, byteCount) = try bytes(offset: offset, count: n, name: "source")
        let (hostByteOffset, _) = try bytes(offset: hostOffset, count: 0, name: "host", limit: host.byteCount / stride)
        return try raw.enqueueCopy(to: host, hostOffset: hostByteOffset, fromOffset: byteOffset, byteCount: byteCount)
    }

    /// Copies asynchronously from `host` and suspends until the copy is done.
    public func copy(from host: HostBuffer, hostOffset: Int = 0, toOffset offset: Int = 0, count: Int? = nil)
        async throws(GPUBridgeError)
    {
        try await enqueueCopy(from: host, hostOffset: hostOffset, toOffset: offset, count: count).wait()
    }

    /// Copies asynchronously into `host` and suspends until the copy is done.
    public func copy(to host: HostBuffer, hostOffset: Int = 0, fromOffset offset: Int = 0, count: Int? = nil)
        async throws(GPUBridgeError)
    {
        try await enqueueCopy(to: host, hostOffset: hostOffset, fromOffset: offset, count: count).wait()
    }

    /// Copies `count` elements from another buffer of the same device and suspends until done.
    public func copy(from source: Buffer<Element>, sourceOffset: Int = 0, toOffset offset: Int = 0, count: Int? = nil)
        async throws(GPUBridgeError)
    {
        let n = count ?? min(remaining(source.count, after: sourceOffset), remaining(self.count, after: offset))
        let (srcByteOffset, byteCount) = try bytes(offset: sourceOffset, count: n, name: "source", limit: source.count)
        let (dstByteOffset, _) = try bytes(offset: offset, count: n, name: "destination")
        try await raw.enqueueCopy(
            from: source.raw, sourceOffset: srcByteOffset, toOffset: dstByteOffset, byteCount: byteCount
        ).wait()
    }

    /// Sets every element (or `count` elements from `offset`) to `value` and suspends until done.
    public func fill(_ value: Element, offset: Int = 0, count: Int? = nil) async throws(GPUBridgeError) {
        let n = count ?? remaining(self.count, after: offset)
        let (byteOffset, byteCount) = try bytes(offset: offset, count: n, name: "fill")
        let pattern = Swift.withUnsafeBytes(of: value) { [UInt8]($0) }
        guard [1, 2, 4, 8].contains(pattern.count) else {
            throw .unsupported(feature: "fill with \(pattern.count)-byte elements", backend: device.id.backend.rawValue)
        }
        try await raw.enqueueFill(pattern: pattern, offset: byteOffset, byteCount: byteCount).wait()
    }

    /// Converts an element range to bytes, checking sign, overflow and bounds against `limit` elements.
    private func bytes(offset: Int, count: Int, name: String, limit: Int? = nil) throws(GPUBridgeError) -> (Int, Int) {
        let limit = limit ?? self.count
        try checkRange(name: name, offset: offset, length: count, limit: limit)
        let stride = MemoryLayout<Element>.stride
        return (offset * stride, count * stride)
    }

    public var description: String { "Buffer<\(Element.self)>(\(count) elements, \(raw))" }
}
