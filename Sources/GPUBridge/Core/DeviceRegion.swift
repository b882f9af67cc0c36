/// A byte range of one device allocation: the allocation's real handle plus an offset and a length.
///
/// `handle` is what the backend's allocator returned: a device pointer (`CUdeviceptr`) for CUDA, a `cl_mem` for
/// OpenCL, a host address for the CPU backend. It is never invented. Backends address the bytes as
/// `handle + offset` (CUDA, CPU) or as a sub-buffer / copy offset (OpenCL).
public struct DeviceRegion: Sendable, Hashable, CustomStringConvertible {
    /// The allocation's native handle, as returned by `DeviceBackend.allocate`.
    public let handle: UInt64
    /// Byte offset of the region within the allocation.
    public let offset: Int
    /// Length of the region in bytes.
    public let byteCount: Int

    public init(handle: UInt64, offset: Int, byteCount: Int) {
        self.handle = handle
        self.offset = offset
        self.byteCount = byteCount
    }

    /// A sub-range of this region. The caller has checked the bounds.
    @inlinable
    public func slice(offset: Int, byteCount: Int) -> DeviceRegion {
        DeviceRegion(handle: handle, offset: self.offset + offset, byteCount: byteCount)
    }

    public var description: String {
        "0x\(String(handle, radix: 16))+\(offset)[\(byteCount)]"
    }
}
