import Glibc
import GPUBridge
import Logging
import Synchronization

/// What the driver reports about a CUDA device beyond `DeviceInfo`.
public struct CUDADeviceProperties: Sendable, Hashable, Codable {
    /// Compute capability, for example 9.0 on an H100.
    public var computeCapabilityMajor: Int
    public var computeCapabilityMinor: Int
    public var multiprocessors: Int
    public var warpSize: Int
    /// Shared memory a block may use without opting in (48 KiB on current GPUs).
    public var sharedMemoryPerBlock: Int
    /// Shared memory a block may use after opting in (`CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN`); the
    /// backend opts in for launches that ask for more than 48 KiB of dynamic shared memory.
    public var sharedMemoryPerBlockOptin: Int
    public var l2CacheBytes: Int
    /// Copy engines that can run beside kernels.
    public var asyncEngines: Int
    /// The device shares one virtual address space with the host.
    public var unifiedAddressing: Bool
    public var managedMemory: Bool
    public var concurrentKernels: Bool
    /// `cuMemAllocAsync` and memory pools are supported.
    public var memoryPools: Bool
    /// `cuMemHostRegister` is supported.
    public var hostRegister: Bool
    /// An integrated GPU that uses the host's memory.
    public var integrated: Bool
    /// PCI address, for example `0000:00:04.0`.
    public var pciBusID: String
}

/// One CUDA device driven through the driver API (`libcuda.so.1`, loaded at run time) with NVRTC for compilation.
///
/// - **Context and threads**: the device's primary context is retained for the backend's life and made current at
///   the start of every call, on whatever thread Swift runs it (`cuCtxSetCurrent`, tens of nanoseconds). Work that
///   blocks on the device runs on the backend's own threads: one completion thread per stream, one housekeeping
///   thread for frees and module unloads.
/// - **Streams**: `Options.streams` non-blocking streams (default 1), chosen round-robin per command. With one
///   stream every command runs in enqueue order; with more, commands on different streams may overlap, and only a
///   `Completion` orders them.
/// - **Memory**: `cuMemAlloc_v2`, the handle is the `CUdeviceptr`; a region is `handle + offset`, so any byte
///   offset is a valid view. `free` hands `cuMemFree_v2` to the housekeeping thread (it may wait for the device);
///   an allocation that fails with `CUDA_ERROR_OUT_OF_MEMORY` while frees are pending waits for them and retries
///   once, then throws `outOfMemory` so the pool can trim and retry.
/// - **Completions**: each command is bracketed by two events; the stream's completion thread waits with
///   `cuEventSynchronize`, measures `cuEventElapsedTime` and completes the `Completion`. No cooperative thread blocks.
///
/// Thread safety: every method may be called from any thread, concurrently. Ownership: devices and pools hold the
/// backend; when it goes, its threads drain their queues, destroy streams and events, and the primary context is
/// released.
public final class CUDABackend: DeviceBackend {
    /// Settings for discovery and for each device's backend.
    public struct Options: Sendable, Hashable {
        /// Non-blocking streams per device (1...64). One stream keeps every command in enqueue order.
        public var streams: Int
        /// The driver library to load.
        public var libraryPath: String
        /// NVRTC to use instead of searching (a file path).
        public var nvrtcPath: String?

        public init(streams: Int = 1, libraryPath: String = "libcuda.so.1", nvrtcPath: String? = nil) {
            self.streams = streams
            self.libraryPath = libraryPath
            self.nvrtcPath = nvrtcPath
        }
    }

    public let info: DeviceInfo
    public let counters = DeviceCounters()
    /// Driver attributes beyond `info`.
    public let properties: CUDADeviceProperties
    /// The NVRTC this device compiles with, or why there is none.
    public let nvrtc: Result<NVRTCCompiler, NVRTCUnavailable>
    public let options: Options

    let driver: CUDADriver
    let context: CUDAContext
    let lanes: [CUDAStreamLane]
    private let nextLaneIndex = Atomic<Int>(0)
    /// Runs frees, host frees and module unloads, which may wait for the device.
    let housekeeping: CUDAWorkerThread
    private let pendingReleases = Atomic<Int>(0)
    private let logger = Logger(label: "gpubridge.cuda")

    /// Opens device `ordinal` on its own (loads the driver and NVRTC as `CUDABackendProvider` does).
    public static func open(ordinal: Int = 0, options: Options = Options()) throws(GPUBridgeError) -> CUDABackend {
        let driver: CUDADriver
        switch CUDADriver.load(path: options.libraryPath) {
        case let .success(loaded): driver = loaded
        case let .failure(reason): throw .backendUnavailable(backend: "cuda", reason: reason.description)
        }
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard ordinal >= 0, ordinal < Int(count) else {
            throw .notFound(kind: "CUDA device", name: "cuda:\(ordinal) (\(count) device(s) found)")
        }
        let nvrtc = options.nvrtcPath.map { NVRTCCompiler.locate(explicitPath: $0) } ?? NVRTCCompiler.shared
        return try CUDABackend(driver: driver, ordinal: ordinal, nvrtc: nvrtc, options: options)
    }

    init(driver: CUDADriver, ordinal: Int, nvrtc: Result<NVRTCCompiler, NVRTCUnavailable>, options: Options)
        throws(GPUBridgeError)
    {
        guard (1...64).contains(options.streams) else {
            throw .invalidArgument(name: "CUDABackend.Options.streams", value: String(options.streams), limit: "1...64")
        }
        self.driver = driver
        self.nvrtc = nvrtc
        self.options = options
        var device: CU.Device = 0
        try driver.check(driver.cuDeviceGet(&device, Int32(ordinal)), "cuDeviceGet")

        func attribute(_ attribute: Int32, _ name: String) throws(GPUBridgeError) -> Int {
            var value: Int32 = 0
            try driver.check(driver.cuDeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute(\(name))")
            return Int(value)
        }
        var nameBuffer = [CChar](repeating: 0, count: 256)
        try driver.check(driver.cuDeviceGetName(&nameBuffer, Int32(nameBuffer.count), device), "cuDeviceGetName")
        let name = String(decoding: nameBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var busBuffer = [CChar](repeating: 0, count: 32)
        let busID =
            driver.cuDeviceGetPCIBusId(&busBuffer, Int32(busBuffer.count), device) == CU.success
            ? String(decoding: busBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown"
        var totalMemory = 0
        try driver.check(driver.cuDeviceTotalMem(&totalMemory, device), "cuDeviceTotalMem_v2")

        let major = try attribute(CU.attributeComputeCapabilityMajor, "COMPUTE_CAPABILITY_MAJOR")
        let minor = try attribute(CU.attributeComputeCapabilityMinor, "COMPUTE_CAPABILITY_MINOR")
        let sharedDefault = try attribute(CU.attributeMaxSharedMemoryPerBlock, "MAX_SHARED_MEMORY_PER_BLOCK")
        let sharedOptin = try attribute(CU.attributeMaxSharedMemoryPerBlockOptin, "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN")
        let properties = CUDADeviceProperties(
            computeCapabilityMajor: major, computeCapabilityMinor: minor,
            multiprocessors: try attribute(CU.attributeMultiprocessorCount, "MULTIPROCESSOR_COUNT"),
            warpSize: try attribute(CU.attributeWarpSize, "WARP_SIZE"),
            sharedMemoryPerBlock: sharedDefault,
            sharedMemoryPerBlockOptin: max(sharedDefault, sharedOptin),
            l2CacheBytes: try attribute(CU.attributeL2CacheSize, "L2_CACHE_SIZE"),
            asyncEngines: try attribute(CU.attributeAsyncEngineCount, "ASYNC_ENGINE_COUNT"),
            unifiedAddressing: try attribute(CU.attributeUnifiedAddressing, "UNIFIED_ADDRESSING") != 0,
            managedMemory: try attribute(CU.attributeManagedMemory, "MANAGED_MEMORY") != 0,
            concurrentKernels: try attribute(CU.attributeConcurrentKernels, "CONCURRENT_KERNELS") != 0,
            memoryPools: try attribute(CU.attributeMemoryPoolsSupported, "MEMORY_POOLS_SUPPORTED") != 0,
            hostRegister: try attribute(CU.attributeHostRegisterSupported, "HOST_REGISTER_SUPPORTED") != 0,
            integrated: try attribute(CU.attributeIntegrated, "INTEGRATED") != 0,
            pciBusID: busID)
        self.properties = properties
        info = DeviceInfo(
            id: DeviceID(backend: .cuda, ordinal: ordinal), name: name, vendor: "NVIDIA",
            driverVersion: "CUDA \(driver.versionString) driver", architecture: "sm_\(major)\(minor)",
            totalMemory: totalMemory, computeUnits: properties.multiprocessors,
            maxGroupItems: try attribute(CU.attributeMaxThreadsPerBlock, "MAX_THREADS_PER_BLOCK"),
            maxGroupSize: [
                try attribute(CU.attributeMaxBlockDimX, "MAX_BLOCK_DIM_X"),
                try attribute(CU.attributeMaxBlockDimY, "MAX_BLOCK_DIM_Y"),
                try attribute(CU.attributeMaxBlockDimZ, "MAX_BLOCK_DIM_Z"),
            ],
            maxGroups: [
                try attribute(CU.attributeMaxGridDimX, "MAX_GRID_DIM_X"),
                try attribute(CU.attributeMaxGridDimY, "MAX_GRID_DIM_Y"),
                try attribute(CU.attributeMaxGridDimZ, "MAX_GRID_DIM_Z"),
            ],
            capabilities: DeviceCapabilities(
                pinnedHostMemory: true, asyncCopies: properties.asyncEngines > 0,
                sharedMemoryPerGroup: properties.sharedMemoryPerBlockOptin, profiling: true,
                unifiedMemory: properties.integrated, float64: true, float16: major * 10 + minor >= 53,
                viewOffsetAlignment: 1, memoryPools: properties.memoryPools))

        let context = try CUDAContext(driver: driver, device: device)
        self.context = context
        var lanes: [CUDAStreamLane] = []
        for index in 0..<options.streams {
            lanes.append(try CUDAStreamLane(context: context, index: index, ordinal: ordinal))
        }
        self.lanes = lanes
        do {
            housekeeping = try CUDAWorkerThread(name: "cuda\(ordinal)-release") { [context] in
                _ = try? context.makeCurrent()
            }
        } catch {
            throw .backendFailure(
                backend: "cuda", call: "pthread_create", code: Int(error.code),
                message: "could not start the housekeeping thread of cuda:\(ordinal)")
        }
    }

    deinit {
        // Jobs already queued (frees, unloads) run first; the context is released when the last job lets go of it.
        housekeeping.stop()
    }

    /// `cuDriverGetVersion`: 1000 * major + 10 * minor (13000 for CUDA 13.0).
    public var driverVersion: Int { Int(driver.driverVersion) }

    public func freeMemory() throws(GPUBridgeError) -> Int {
        try context.makeCurrent()
        var free = 0
        var total = 0
        try driver.check(driver.cuMemGetInfo(&free, &total), "cuMemGetInfo_v2")
        return free
    }

    /// The stream the next command goes to (round-robin).
    func nextLane() -> CUDAStreamLane {
        if lanes.count == 1 { return lanes[0] }
        let ticket = nextLaneIndex.wrappingAdd(1, ordering: .relaxed).oldValue
        return lanes[Int(UInt(bitPattern: ticket) % UInt(lanes.count))]
    }

    /// Runs `job` on the housekeeping thread (after everything queued there before it).
    func releaseLater(_ job: @escaping @Sendable () -> Void) {
        pendingReleases.add(1, ordering: .relaxed)
        housekeeping.submit { [self] in
            job()
            pendingReleases.subtract(1, ordering: .releasing)
        }
    }

    // MARK: Allocator

    /// 256 bytes: `cuMemAlloc` returns 256-byte-aligned pointers; the pool rounds this up to its 512-byte minimum.
    public var allocationGranularity: Int { 256 }

    public func allocate(byteCount: Int) throws(GPUBridgeError) -> UInt64 {
        try context.makeCurrent()
        var pointer: CU.DevicePointer = 0
        var status = driver.cuMemAlloc(&pointer, byteCount)
        if status == CU.errorOutOfMemory, pendingReleases.load(ordering: .acquiring) > 0 {
            // Frees handed to the housekeeping thread may not have reached the driver yet: let them, then retry.
            housekeeping.drain()
            status = driver.cuMemAlloc(&pointer, byteCount)
        }
        if status == CU.errorOutOfMemory {
            let (name, message) = driver.describe(status)
            let free = (try? freeMemory()).map { "\($0) bytes free on the device" } ?? "free memory unknown"
            throw .outOfMemory(
                device: info.id.description, requested: byteCount, inUse: 0, cached: 0, limit: info.totalMemory,
                detail: "cuMemAlloc_v2: \(name): \(message); \(free)")
        }
        try driver.check(status, "cuMemAlloc_v2(\(byteCount) bytes)")
        counters.recordAllocation()
        return pointer
    }

    /// Hands `cuMemFree_v2` to the housekeeping thread: it may wait for the device, and this may be called from a
    /// deinitializer on any thread.
    public func free(handle: UInt64, byteCount: Int) {
        releaseLater { [self] in
            let status = driver.cuMemFree(handle)
            if status == CU.success {
                counters.recordFree()
            } else {
                logger.error(
                    "cuMemFree_v2 failed",
                    metadata: [
                        "device": "\(info.id)", "bytes": "\(byteCount)",
                        "error": "\(driver.failure(status, "cuMemFree_v2"))",
                    ])
            }
        }
    }

    public func copy(from source: UnsafeRawBufferPointer, to destination: DeviceRegion) throws(GPUBridgeError) {
        guard let base = source.baseAddress, source.count > 0 else { return }
        let target = CUDAArgumentPacking.devicePointer(destination)
        // On a stream and waited for with an event: a plain cuMemcpyHtoD from pageable memory may return before the
        // DMA has finished, and would not be ordered with this backend's non-blocking streams.
        try nextLane().perform { stream throws(GPUBridgeError) in
            try driver.check(driver.cuMemcpyHtoDAsync(target, base, source.count, stream), "cuMemcpyHtoDAsync_v2")
        }
        counters.recordCopy(bytes: source.count)
    }

    public func copy(from source: DeviceRegion, to destination: UnsafeMutableRawBufferPointer) throws(GPUBridgeError) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        let origin = CUDAArgumentPacking.devicePointer(source)
        try nextLane().perform { stream throws(GPUBridgeError) in
            try driver.check(driver.cuMemcpyDtoHAsync(base, origin, destination.count, stream), "cuMemcpyDtoHAsync_v2")
        }
        counters.recordCopy(bytes: destination.count)
    }

    public func enqueueCopy(from source: DeviceRegion, to destination: DeviceRegion) throws(GPUBridgeError)
        -> Completion
    {
        let count = min(source.byteCount, destination.byteCount)
        if source.handle == destination.handle, source.offset < destination.offset + count,
            destination.offset < source.offset + count,
            source.offset != destination.offset
        {
            throw .invalidArgument(
                name: "device-to-device copy", value: "\(source) -> \(destination)",
                limit: "ranges that do not overlap (cuMemcpyDtoDAsync is not memmove)")
        }
        guard count > 0 else { return Completion(finished: .success(nil)) }
        if source.handle == destination.handle, source.offset == destination.offset {
            return Completion(finished: .success(nil))  // copying a range onto itself changes nothing
        }
        let from = CUDAArgumentPacking.devicePointer(source)
        let to = CUDAArgumentPacking.devicePointer(destination)
        let completion = try nextLane().submit("device-to-device copy") { stream throws(GPUBridgeError) in
            try driver.check(driver.cuMemcpyDtoDAsync(to, from, count, stream), "cuMemcpyDtoDAsync_v2")
        }
        counters.recordCopy(bytes: count)
        return completion
    }

    /// 1-byte patterns (and any pattern whose bytes are all equal) use `cuMemsetD8Async`; 2- and 4-byte patterns
    /// `cuMemsetD16Async` / `cuMemsetD32Async` when the address is aligned to them; 8-byte patterns at a 4-aligned
    /// address two `cuMemsetD2D32Async` (rows of 8 bytes, one 4-byte column each for the low and the high half).
    /// Anything misaligned is written byte column by byte column with `cuMemsetD2D8Async` (pitch = pattern length).
    public func enqueueFill(_ destination: DeviceRegion, pattern: [UInt8]) throws(GPUBridgeError) -> Completion {
        let width = pattern.count
        guard [1, 2, 4, 8].contains(width) else {
            throw .invalidArgument(name: "pattern.count", value: String(width), limit: "1, 2, 4 or 8 bytes")
        }
        let bytes = destination.byteCount
        guard bytes % width == 0 else {
            throw .invalidArgument(
                name: "byteCount", value: String(bytes), limit: "multiples of the pattern's \(width) bytes")
        }
        guard bytes > 0 else { return Completion(finished: .success(nil)) }
        let address = CUDAArgumentPacking.devicePointer(destination)
        let count = bytes / width
        func word(_ start: Int, _ length: Int) -> UInt32 {
            var value: UInt32 = 0
            for index in 0..<length { value |= UInt32(pattern[start + index]) << (8 * index) }
            return value
        }
        let completion = try nextLane().submit("fill") { stream throws(GPUBridgeError) in
            if pattern.allSatisfy({ $0 == pattern[0] }) {
                try driver.check(driver.cuMemsetD8Async(address, pattern[0], bytes, stream), "cuMemsetD8Async")
            } else if width == 2, address % 2 == 0 {
                try driver.check(
                    driver.cuMemsetD16Async(address, UInt16(word(0, 2)), count, stream), "cuMemsetD16Async")
            } else if width == 4, address % 4 == 0 {
                try driver.check(driver.cuMemsetD32Async(address, word(0, 4), count, stream), "cuMemsetD32Async")
            } else if width == 8, address % 4 == 0 {
                let low = word(0, 4)
                let high = word(4, 4)
                if low == high {
                    try driver.check(driver.cuMemsetD32Async(address, low, count * 2, stream), "cuMemsetD32Async")
                } else {
                    try driver.check(driver.cuMemsetD2D32Async(address, 8, low, 1, count, stream), "cuMemsetD2D32Async")
                    try driver.check(
                        driver.cuMemsetD2D32Async(address + 4, 8, high, 1, count, stream), "cuMemsetD2D32Async")
                }
            } else {
                for column in 0..<width {
                    try driver.check(
                        driver.cuMemsetD2D8Async(address + UInt64(column), width, pattern[column], 1, count, stream),
                        "cuMemsetD2D8Async")
                }
            }
        }
        counters.recordCopy(bytes: bytes)
        return completion
    }

    public func enqueueCopy(from source: HostAllocation, offset: Int, owner: any Sendable, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        guard destination.byteCount > 0 else { return Completion(finished: .success(nil)) }
        guard let host = UnsafeRawPointer(bitPattern: UInt(source.address) &+ UInt(offset)) else {
            throw .invalidArgument(name: "host address", value: "0", limit: "a mapped host address")
        }
        let target = CUDAArgumentPacking.devicePointer(destination)
        let count = destination.byteCount
        let completion = try nextLane().submit("host-to-device copy", retaining: [owner]) {
            stream throws(GPUBridgeError) in
            try driver.check(driver.cuMemcpyHtoDAsync(target, host, count, stream), "cuMemcpyHtoDAsync_v2")
        }
        counters.recordCopy(bytes: count)
        return completion
    }

    public func enqueueCopy(from source: DeviceRegion, to destination: HostAllocation, offset: Int, owner: any Sendable)
        throws(GPUBridgeError) -> Completion
    {
        guard source.byteCount > 0 else { return Completion(finished: .success(nil)) }
        guard let host = UnsafeMutableRawPointer(bitPattern: UInt(destination.address) &+ UInt(offset)) else {
            throw .invalidArgument(name: "host address", value: "0", limit: "a mapped host address")
        }
        let origin = CUDAArgumentPacking.devicePointer(source)
        let count = source.byteCount
        let completion = try nextLane().submit("device-to-host copy", retaining: [owner]) {
            stream throws(GPUBridgeError) in
            try driver.check(driver.cuMemcpyDtoHAsync(host, origin, count, stream), "cuMemcpyDtoHAsync_v2")
        }
        counters.recordCopy(bytes: count)
        return completion
    }

    /// Pinned: `cuMemHostAlloc` (portable page-locked memory). If the driver has no page-locked memory left the
    /// allocation falls back to pageable memory and says so (`pinned == false`). Pageable: 64-byte aligned
    /// `posix_memalign`.
    public func allocateHost(byteCount: Int, pinned: Bool) throws(GPUBridgeError) -> HostAllocation {
        if pinned {
            try context.makeCurrent()
            var pointer: UnsafeMutableRawPointer?
            let status = driver.cuMemHostAlloc(&pointer, byteCount, CU.memHostAllocPortable)
            if status == CU.success, let pointer {
                return HostAllocation(address: UInt64(UInt(bitPattern: pointer)), byteCount: byteCount, pinned: true)
            }
            guard status == CU.errorOutOfMemory else {
                throw driver.failure(status, "cuMemHostAlloc(\(byteCount) bytes)")
            }
            logger.warning(
                "no page-locked host memory left; using pageable memory",
                metadata: ["bytes": "\(byteCount)", "device": "\(info.id)"])
        }
        var pointer: UnsafeMutableRawPointer?
        let status = posix_memalign(&pointer, 64, byteCount)
        guard status == 0, let pointer else {
            throw .outOfMemory(
                device: "host", requested: byteCount, inUse: 0, cached: 0, limit: byteCount,
                detail: "posix_memalign returned \(status)")
        }
        return HostAllocation(address: UInt64(UInt(bitPattern: pointer)), byteCount: byteCount, pinned: false)
    }

    /// Pageable memory is freed at once; pinned memory is freed with `cuMemFreeHost` on the housekeeping thread
    /// (it may wait for the device).
    public func freeHost(_ allocation: HostAllocation) {
        let address = UInt(allocation.address)
        guard allocation.pinned else {
            Glibc.free(UnsafeMutableRawPointer(bitPattern: address))
            return
        }
        releaseLater { [self] in
            let status = driver.cuMemFreeHost(UnsafeMutableRawPointer(bitPattern: address))
            if status != CU.success {
                logger.error(
                    "cuMemFreeHost failed",
                    metadata: ["device": "\(info.id)", "error": "\(driver.failure(status, "cuMemFreeHost"))"])
            }
        }
    }

    /// Page-locks existing host memory (`cuMemHostRegister_v2`, portable) so async copies from and to it run without
    /// a staging copy. The registration ends (`cuMemHostUnregister`, on the housekeeping thread) when the returned
    /// object goes; the caller keeps the memory alive and unmoved until then.
    public func registerHostMemory(_ memory: UnsafeMutableRawBufferPointer) throws(GPUBridgeError)
        -> CUDAHostRegistration
    {
        guard let base = memory.baseAddress, memory.count > 0 else {
            throw .invalidArgument(name: "memory.count", value: String(memory.count), limit: "1...\(Int.max) bytes")
        }
        try context.makeCurrent()
        try driver.check(
            driver.cuMemHostRegister(base, memory.count, CU.memHostRegisterPortable),
            "cuMemHostRegister_v2(\(memory.count) bytes)")
        return CUDAHostRegistration(
            backend: self,
            allocation: HostAllocation(
                address: UInt64(UInt(bitPattern: base)), byteCount: memory.count, pinned: true))
    }

    // MARK: Compiler

    public var languages: Set<KernelLanguage> { [.cuda] }

    public var compilerVersion: String {
        switch nvrtc {
        case let .success(compiler): return compiler.version
        case .failure: return "NVRTC unavailable"
        }
    }

    public func compilerFlags(for options: CompileOptions) -> [String] {
        switch nvrtc {
        case let .success(compiler): return compiler.flags(for: options, architecture: info.architecture)
        case .failure: return NVRTCCompiler.flags(target: options.target ?? info.architecture, options: options)
        }
    }

    public func compile(_ source: KernelSource, options: CompileOptions) throws(GPUBridgeError) -> KernelBinary {
        switch nvrtc {
        case let .success(compiler):
            counters.recordCompile()
            return try compiler.compile(source, options: options, architecture: info.architecture)
        case let .failure(reason):
            throw .backendUnavailable(backend: "cuda", reason: "cannot compile '\(source.name)': \(reason)")
        }
    }

    // MARK: Program

    public func load(_ binary: KernelBinary, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        try CUDAProgram(backend: self, binary: binary, source: source)
    }

    // MARK: Queue

    /// Records a marker on every stream and suspends until each has passed: all work enqueued before the call has
    /// finished. The waiting is done by the completion threads.
    public func synchronize() async throws(GPUBridgeError) {
        var markers: [Completion] = []
        for lane in lanes {
            markers.append(try lane.submit("synchronize") { _ throws(GPUBridgeError) in })
        }
        for marker in markers { try await marker.wait() }
    }
}

/// Existing host memory page-locked with `cuMemHostRegister_v2`.
///
/// Pass `allocation` with `self` as the owner to `CUDABackend.enqueueCopy(from:offset:owner:to:)` (and the
/// device-to-host counterpart): the copy then keeps the registration alive until it has completed. End it with
/// `unregister()` before freeing the memory (after the copies using it have completed); if the object goes first,
/// the housekeeping thread unregisters it later. Thread safety: any thread.
public final class CUDAHostRegistration: Sendable {
    /// The registered range (`pinned == true`).
    public let allocation: HostAllocation
    private let backend: CUDABackend
    private let registered = Mutex<Bool>(true)

    init(backend: CUDABackend, allocation: HostAllocation) {
        self.backend = backend
        self.allocation = allocation
    }

    /// Whether the range is still registered.
    public var isRegistered: Bool { registered.withLock { $0 } }

    /// Unregisters the range now (`cuMemHostUnregister`), on the calling thread; it may wait for the device.
    /// Later calls do nothing.
    public func unregister() throws(GPUBridgeError) {
        let backend = backend
        let address = UInt(allocation.address)
        try registered.withLock { (registered: inout Bool) throws(GPUBridgeError) in
            guard registered else { return }
            try backend.context.makeCurrent()
            try backend.driver.check(
                backend.driver.cuMemHostUnregister(UnsafeMutableRawPointer(bitPattern: address)), "cuMemHostUnregister")
            registered = false
        }
    }

    deinit {
        guard registered.withLock({ $0 }) else { return }
        let backend = backend
        let address = UInt(allocation.address)
        backend.releaseLater {
            _ = backend.driver.cuMemHostUnregister(UnsafeMutableRawPointer(bitPattern: address))
        }
    }
}
