/// Host memory for asynchronous copies, page-locked (pinned) where the device's backend supports it.
///
/// Ownership: the buffer owns its memory and frees it through its backend when the last reference goes; an enqueued
/// copy holds a reference until the copy completes, so dropping yours right after enqueueing is safe. Reading or
/// writing the contents while a copy into or out of them is in flight is a data race; wait for the copy's
/// `Completion` first.
public final class HostBuffer: Sendable {
    /// The device whose backend allocated the memory.
    public let device: Device
    let allocation: HostAllocation

    init(device: Device, allocation: HostAllocation) {
        self.device = device
        self.allocation = allocation
    }

    deinit { device.backend.freeHost(allocation) }

    /// Length in bytes.
    public var byteCount: Int { allocation.byteCount }
    /// Whether the memory is page-locked and registered with the device.
    public var isPinned: Bool { allocation.pinned }
    /// The host address of the first byte.
    public var address: UInt64 { allocation.address }

    /// Calls `body` with the memory; valid only inside `body`.
    public func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E)
        -> R
    {
        let base = UnsafeMutableRawPointer(bitPattern: UInt(allocation.address))
        return try body(UnsafeMutableRawBufferPointer(start: base, count: allocation.byteCount))
    }

    /// Writes `values` at element `offset` (counted in `Element`s).
    public func write<Element: BitwiseCopyable>(_ values: [Element], at offset: Int = 0) throws(GPUBridgeError) {
        let stride = MemoryLayout<Element>.stride
        let (byteOffset, o1) = offset.multipliedReportingOverflow(by: stride)
        guard !o1 else {
            throw .invalidArgument(name: "offset", value: String(offset), limit: "0...\(byteCount / stride)")
        }
        try checkRange(name: "host buffer", offset: byteOffset, length: values.count * stride, limit: byteCount)
        withUnsafeMutableBytes { dst in
            values.withUnsafeBytes { src in
                if let base = src.baseAddress, src.count > 0 {
                    (dst.baseAddress! + byteOffset).copyMemory(from: base, byteCount: src.count)
                }
            }
        }
    }

    /// Reads `count` elements starting at element `offset`.
    public func read<Element: BitwiseCopyable>(_ type: Element.Type, count: Int, at offset: Int = 0)
        throws(GPUBridgeError) -> [Element]
    {
        let stride = MemoryLayout<Element>.stride
        let (byteOffset, o1) = offset.multipliedReportingOverflow(by: stride)
        let (length, o2) = count.multipliedReportingOverflow(by: stride)
        guard !o1, !o2 else {
            throw .invalidArgument(name: "count", value: String(count), limit: "0...\(byteCount / stride)")
        }
        try checkRange(name: "host buffer", offset: byteOffset, length: length, limit: byteCount)
        return withUnsafeMutableBytes { src in
            [Element](unsafeUninitializedCapacity: count) { out, initialized in
                if length > 0 {
                    UnsafeMutableRawPointer(out.baseAddress!).copyMemory(
                        from: src.baseAddress! + byteOffset, byteCount: length)
                }
                initialized = count
            }
        }
    }

    func check(device other: Device) throws(GPUBridgeError) {
        guard other === device else {
            let names = Device.names(expected: other, actual: device)
            throw .wrongDevice(name: "host buffer", expected: names.expected, actual: names.actual)
        }
    }
}
