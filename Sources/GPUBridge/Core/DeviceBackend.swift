/// Host memory handed out by a backend: its address, its length and whether it is page-locked (pinned).
public struct HostAllocation: Sendable, Hashable {
    /// The host address (`UnsafeMutableRawPointer(bitPattern:)` of it is the memory).
    public let address: UInt64
    public let byteCount: Int
    /// Page-locked memory registered with the device (DMA without a bounce buffer).
    public let pinned: Bool

    public init(address: UInt64, byteCount: Int, pinned: Bool) {
        self.address = address
        self.byteCount = byteCount
        self.pinned = pinned
    }
}

/// One device as a backend drives it: the **allocator**, **compiler** and **program** roles plus the device's
/// **queue**. `Device` wraps a backend with its pool and cache; applications use `Device`, not this protocol.
///
/// Contract for implementers:
/// - Every method may be called from any thread, concurrently. A backend that needs a thread-bound context (CUDA)
///   makes it current inside each call.
/// - Sizes, offsets and devices have been validated by `Device` before a call reaches the backend; the backend checks
///   what only it can know (driver limits) and reports native failures as `GPUBridgeError.backendFailure` naming the
///   native call.
/// - Native allocations and copies bump `counters`.
/// - `free` and `freeHost` may be called from a deinitializer on any thread; they must not block on the device.
public protocol DeviceBackend: AnyObject, Sendable {
    /// The device's identity, names and limits.
    var info: DeviceInfo { get }
    /// Counts of native operations this backend performed.
    var counters: DeviceCounters { get }
    /// Device memory currently free, as the driver reports it.
    func freeMemory() throws(GPUBridgeError) -> Int
    /// Why the device can no longer run work in this process (a fault ended its context), or nil while it can. Once
    /// set it stays set; every command then fails with `GPUBridgeError.deviceLost`. Cheap (an atomic or locked read).
    var lostReason: String? { get }

    // MARK: Allocator

    /// The unit the buffer pool rounds sizes and split points to (at least the view alignment the device needs).
    var allocationGranularity: Int { get }
    /// Allocates `byteCount` bytes of device memory and returns its native handle.
    /// Throws `outOfMemory` when the driver reports that it has no memory left, so the pool can trim and retry.
    func allocate(byteCount: Int) throws(GPUBridgeError) -> UInt64
    /// Releases an allocation made by `allocate`.
    func free(handle: UInt64, byteCount: Int)
    /// Tells the backend a region (a pooled block or a view) will not be used again, so it can drop per-region
    /// objects (OpenCL sub-buffers). The memory itself stays with the pool.
    func regionRetired(_ region: DeviceRegion)

    /// Copies host memory into a region and returns when the copy has finished.
    func copy(from source: UnsafeRawBufferPointer, to destination: DeviceRegion) throws(GPUBridgeError)
    /// Copies a region into host memory and returns when the copy has finished.
    func copy(from source: DeviceRegion, to destination: UnsafeMutableRawBufferPointer) throws(GPUBridgeError)
    /// Enqueues a device-to-device copy of equal-length regions.
    func enqueueCopy(from source: DeviceRegion, to destination: DeviceRegion) throws(GPUBridgeError) -> Completion
    /// Enqueues a fill of a region with a repeated pattern (1, 2, 4 or 8 bytes; the region's length is a multiple).
    func enqueueFill(_ destination: DeviceRegion, pattern: [UInt8]) throws(GPUBridgeError) -> Completion
    /// Enqueues a copy from host memory; the returned completion keeps `owner` alive until the copy is done.
    func enqueueCopy(from source: HostAllocation, offset: Int, owner: any Sendable, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    /// Enqueues a copy into host memory; the returned completion keeps `owner` alive until the copy is done.
    func enqueueCopy(from source: DeviceRegion, to destination: HostAllocation, offset: Int, owner: any Sendable)
        throws(GPUBridgeError) -> Completion
    /// Enqueues a copy of `source` into `destination` and takes its own copy of the bytes before it returns, so the
    /// caller may reuse or free `source` at once. The default copies into pageable memory from `allocateHost`; the
    /// CUDA backend copies into a reused page-locked staging block instead (no page-locking per call).
    func enqueueCopy(copying source: UnsafeRawBufferPointer, to destination: DeviceRegion) throws(GPUBridgeError)
        -> Completion
    /// Allocates host memory for transfers, page-locked when `pinned` and the backend can.
    func allocateHost(byteCount: Int, pinned: Bool) throws(GPUBridgeError) -> HostAllocation
    /// Releases memory from `allocateHost`.
    func freeHost(_ allocation: HostAllocation)

    // MARK: Compiler

    /// The languages this backend compiles.
    var languages: Set<KernelLanguage> { get }
    /// The compiler's identity and version (part of cache keys), for example `NVRTC 13.0`.
    var compilerVersion: String { get }
    /// The native flags `options` turn into (part of cache keys).
    func compilerFlags(for options: CompileOptions) -> [String]
    /// Compiles kernel text to a loadable binary. Failures carry the compiler's log.
    func compile(_ source: KernelSource, options: CompileOptions) throws(GPUBridgeError) -> KernelBinary

    // MARK: Program

    /// Loads a binary made by `compile` (now or in an earlier process) and finds `entryPoint` in it.
    func load(_ binary: KernelBinary, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram
    /// Makes a program from a Swift kernel. Only the CPU backend runs Swift kernels.
    func makeProgram(_ kernel: SwiftKernel, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram

    // MARK: Queue

    /// Suspends until all work enqueued so far on this device has finished.
    func synchronize() async throws(GPUBridgeError)
}

extension DeviceBackend {
    /// Backends whose devices cannot be lost (the CPU, OpenCL, which reports faults per command) answer nil.
    public var lostReason: String? { nil }

    public func regionRetired(_ region: DeviceRegion) {}

    public func enqueueCopy(copying source: UnsafeRawBufferPointer, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        guard let base = source.baseAddress, source.count > 0 else { return Completion(finished: .success(nil)) }
        let staging = StagedHostMemory(
            backend: self, allocation: try allocateHost(byteCount: source.count, pinned: false))
        UnsafeMutableRawPointer(bitPattern: UInt(staging.allocation.address))!.copyMemory(
            from: base, byteCount: source.count)
        return try enqueueCopy(from: staging.allocation, offset: 0, owner: staging, to: destination)
    }

    public func makeProgram(_ kernel: SwiftKernel, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        throw .unsupported(feature: "Swift kernels ('\(source.name)')", backend: info.id.backend.rawValue)
    }
}

/// A compiled kernel loaded on one device, ready to launch.
public protocol KernelProgram: AnyObject, Sendable {
    /// The entry point's name.
    var entryPoint: String { get }
    /// The number of parameters the binary declares, where the backend can read it (OpenCL `CL_KERNEL_NUM_ARGS`,
    /// CUDA `cuFuncGetParamInfo`); nil when unknown.
    var parameterCount: Int? { get }
    /// Enqueues one launch with arguments in declared order; `Device` has validated shape, devices and extents.
    /// The arguments' buffers are passed by handle: nothing is allocated or copied.
    func enqueue(_ launch: Launch, arguments: [ResolvedArgument]) throws(GPUBridgeError) -> Completion
}

/// Host memory a backend allocated for one transfer and frees when the transfer's `Completion` lets it go.
/// Owned by that completion; touched only by the thread that fills it and, after the copy, by the one releasing it.
final class StagedHostMemory: Sendable {
    let backend: any DeviceBackend
    let allocation: HostAllocation

    init(backend: any DeviceBackend, allocation: HostAllocation) {
        self.backend = backend
        self.allocation = allocation
    }

    deinit { backend.freeHost(allocation) }
}
