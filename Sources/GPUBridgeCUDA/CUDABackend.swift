import Glibc
import GPUBridge
import Logging
import Synchronization

/// One CUDA device driven through the driver API (`libcuda.so.1`, loaded at run time) with NVRTC for compilation.
///
/// - **Discovery costs nothing on the device**: the backend is built from `cuDeviceGet*` answers only
///   (`CUDADeviceDescription`). The primary context, the streams, the threads and the staging pool
///   (`CUDARuntime`) are opened on the first call that needs them.
/// - **Context and threads**: once open, the device's primary context is retained for the backend's life and made
///   current at the start of every call, on whatever thread Swift runs it (`cuCtxSetCurrent`, tens of
///   nanoseconds). Work that blocks on the device runs on the backend's own threads: one completion thread per
///   stream, one housekeeping thread for frees and module unloads.
/// - **Streams**: `Options.streams` non-blocking streams (default 1), chosen round-robin per command. With one
///   stream every command runs in enqueue order; with more, commands on different streams may overlap, and only a
///   `Completion` orders them.
/// - **Memory**: `cuMemAlloc_v2`, the handle is the `CUdeviceptr`; a region is `handle + offset`. A view may start
///   at any byte, but `Device` refuses a view as a kernel argument unless it is aligned to its element type. `free`
///   hands `cuMemFree_v2` to the housekeeping thread (it may wait for the device).
/// - **Copies from and to pageable memory** go through reused page-locked staging blocks (`CUDAStagingPool`): the
///   driver would otherwise copy them synchronously, inside the stream's submission lock.
/// - **Out of memory**: `CUDA_ERROR_OUT_OF_MEMORY` from any call (allocation, module load, launch, stream or event
///   creation) is `GPUBridgeError.outOfMemory`; when frees are still queued the call waits for them and retries once,
///   and `Device` trims its pool and retries once more.
/// - **Faults**: an error that ends the context (`CUDAFailureKind.contextLost`) makes the device lost for the rest
///   of the process (`lostReason`, `GPUBridgeError.deviceLost`); `DeviceBroker` then sends it no work.
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
    let device: CU.Device
    let ordinal: Int
    let health: CUDAHealth
    private let opened = Mutex<CUDARuntime?>(nil)
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

    /// Reads the device's description with `cuDeviceGet*` calls; creates no context and starts no thread.
    init(driver: CUDADriver, ordinal: Int, nvrtc: Result<NVRTCCompiler, NVRTCUnavailable>, options: Options)
        throws(GPUBridgeError)
    {
        guard (1...64).contains(options.streams) else {
            throw .invalidArgument(name: "CUDABackend.Options.streams", value: String(options.streams), limit: "1...64")
        }
        self.driver = driver
        self.nvrtc = nvrtc
        self.options = options
        self.ordinal = ordinal
        var device: CU.Device = 0
        try driver.check(driver.cuDeviceGet(&device, Int32(ordinal)), "cuDeviceGet")
        self.device = device
        var nameBuffer = [CChar](repeating: 0, count: 256)
        try driver.check(driver.cuDeviceGetName(&nameBuffer, Int32(nameBuffer.count), device), "cuDeviceGetName")
        let name = String(decoding: nameBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var busBuffer = [CChar](repeating: 0, count: 32)
        let busID =
            driver.cuDeviceGetPCIBusId(&busBuffer, Int32(busBuffer.count), device) == CU.success
            ? String(decoding: busBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
        var totalMemory = 0
        try driver.check(driver.cuDeviceTotalMem(&totalMemory, device), "cuDeviceTotalMem_v2")
        let description = try CUDADeviceDescription.read(
            ordinal: ordinal, name: name, totalMemory: totalMemory, busID: busID, driverVersion: driver.versionString
        ) { (attribute: Int32, label: String) throws(GPUBridgeError) -> Int in
            var value: Int32 = 0
            try driver.check(driver.cuDeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute(\(label))")
            return Int(value)
        }
        info = description.info
        properties = description.properties
        health = CUDAHealth(driver: driver, device: description.info.id.description)
    }

    /// `cuDriverGetVersion`: 1000 * major + 10 * minor (13000 for CUDA 13.0).
    public var driverVersion: Int { Int(driver.driverVersion) }

    /// Whether the context, streams and threads have been opened (by the first call that needed them).
    public var isOpen: Bool { opened.withLock { $0 != nil } }

    public var lostReason: String? { health.lostReason }

    /// The device's runtime, opened on first use, with its context current on the calling thread. Throws
    /// `deviceLost` once a fault ended the context.
    func runtime() throws(GPUBridgeError) -> CUDARuntime {
        try health.ensureUsable()
        let runtime = try opened.withLock { (runtime: inout CUDARuntime?) throws(GPUBridgeError) -> CUDARuntime in
            if let runtime { return runtime }
            let new = try CUDARuntime(
                driver: driver, device: device, ordinal: ordinal, streams: options.streams, health: health)
            runtime = new
            return new
        }
        try runtime.context.makeCurrent()
        return runtime
    }

    /// Opens the runtime if needed and makes the context current on the calling thread.
    func makeCurrent() throws(GPUBridgeError) { _ = try runtime() }

    /// Runs `job` on the housekeeping thread; at once when the runtime was never opened (nothing is queued then).
    func releaseLater(_ job: @escaping @Sendable () -> Void) {
        if let runtime = opened.withLock({ $0 }) { runtime.releaser.later(job) } else { job() }
    }

    public func freeMemory() throws(GPUBridgeError) -> Int {
        _ = try runtime()
        var free = 0
        var total = 0
        try health.check(driver.cuMemGetInfo(&free, &total), "cuMemGetInfo_v2")
        return free
    }

    // MARK: Allocator

    /// 256 bytes: `cuMemAlloc` returns 256-byte-aligned pointers; the pool rounds this up to its 512-byte minimum.
    public var allocationGranularity: Int { 256 }

    public func allocate(byteCount: Int) throws(GPUBridgeError) -> UInt64 {
        let runtime = try runtime()
        var pointer: CU.DevicePointer = 0
        // Frees handed to the housekeeping thread may not have reached the driver yet: on out-of-memory, let them.
        let status = runtime.releaser.retryingOutOfMemory { driver.cuMemAlloc(&pointer, byteCount) }
        if status == CU.errorOutOfMemory {
            let (name, message) = driver.describe(status)
            let free = (try? freeMemory()).map { "\($0) bytes free on the device" } ?? "free memory unknown"
            throw .outOfMemory(
                device: info.id.description, requested: byteCount, inUse: 0, cached: 0, limit: info.totalMemory,
                detail: "cuMemAlloc_v2: \(name): \(message); \(free)")
        }
        try health.check(status, "cuMemAlloc_v2(\(byteCount) bytes)")
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

    /// Copies through staging blocks: each chunk is copied into a page-locked block by this thread while the previous
    /// chunk's DMA runs; at most two chunks are in flight, so two blocks are reused whatever the length. The caller
    /// waits for the last; no lock is held while waiting.
    public func copy(from source: UnsafeRawBufferPointer, to destination: DeviceRegion) throws(GPUBridgeError) {
        guard let base = source.baseAddress, source.count > 0 else { return }
        let runtime = try runtime()
        let target = CUDAArgumentPacking.devicePointer(destination)
        let lane = runtime.nextLane()
        // In flight, oldest first; each mark's block goes back to the pool once the mark has passed.
        var inFlight: [(mark: CUDALaneMark, block: CUDAStagingBlock)] = []
        defer { for chunk in inFlight { try? lane.wait(chunk.mark, "host-to-device copy") } }
        var offset = 0
        while offset < source.count {
            if inFlight.count == 2 {
                let oldest = inFlight.removeFirst()
                try lane.wait(oldest.mark, "host-to-device copy")
            }
            let block = try runtime.staging.take(
                byteCount: min(CUDAStagingPool.chunkBytes, source.count - offset))[0]
            block.pointer.copyMemory(from: base + offset, byteCount: block.used)
            let chunkOffset = offset
            let mark = try lane.enqueueMarked { command throws(GPUBridgeError) in
                try command.issue(
                    driver.cuMemcpyHtoDAsync(target + UInt64(chunkOffset), block.pointer, block.used, command.stream),
                    "cuMemcpyHtoDAsync_v2")
            }
            inFlight.append((mark, block))
            offset += block.used
        }
        while !inFlight.isEmpty {
            let oldest = inFlight.removeFirst()
            try lane.wait(oldest.mark, "host-to-device copy")
        }
        counters.recordCopy(bytes: source.count)
    }

    /// Copies through staging blocks: chunk i+1's DMA is queued before chunk i is copied out to `destination`.
    public func copy(from source: DeviceRegion, to destination: UnsafeMutableRawBufferPointer) throws(GPUBridgeError) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        let runtime = try runtime()
        let origin = CUDAArgumentPacking.devicePointer(source)
        let lane = runtime.nextLane()
        var pending: (mark: CUDALaneMark, block: CUDAStagingBlock, offset: Int)?
        defer { if let pending { try? lane.wait(pending.mark, "device-to-host copy") } }
        var offset = 0
        while offset < destination.count {
            let block = try runtime.staging.take(
                byteCount: min(CUDAStagingPool.chunkBytes, destination.count - offset))[0]
            let chunkOffset = offset
            let mark = try lane.enqueueMarked { command throws(GPUBridgeError) in
                try command.issue(
                    driver.cuMemcpyDtoHAsync(block.pointer, origin + UInt64(chunkOffset), block.used, command.stream),
                    "cuMemcpyDtoHAsync_v2")
            }
            if let previous = pending {
                pending = nil
                do {
                    try lane.wait(previous.mark, "device-to-host copy")
                } catch {
                    try? lane.wait(mark, "device-to-host copy")
                    throw error
                }
                (base + previous.offset).copyMemory(from: previous.block.pointer, byteCount: previous.block.used)
            }
            pending = (mark, block, offset)
            offset += block.used
        }
        if let last = pending {
            pending = nil
            try lane.wait(last.mark, "device-to-host copy")
            (base + last.offset).copyMemory(from: last.block.pointer, byteCount: last.block.used)
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
        let completion = try runtime().nextLane().submit("device-to-device copy") { command throws(GPUBridgeError) in
            try command.issue(driver.cuMemcpyDtoDAsync(to, from, count, command.stream), "cuMemcpyDtoDAsync_v2")
        }
        counters.recordCopy(bytes: count)
        return completion
    }

    /// One command of the steps `CUDAFillPlan` chooses: a single `cuMemsetD8/16/32Async` where the pattern and the
    /// alignment allow, single bytes at misaligned ends, and for 8-byte patterns the first 8 bytes doubled with
    /// device-to-device copies. If a step fails after others were queued, the completion fails once those have run.
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
        let steps = CUDAFillPlan.steps(address: address, byteCount: bytes, pattern: pattern)
        let completion = try runtime().nextLane().submit("fill") { command throws(GPUBridgeError) in
            let stream = command.stream
            for step in steps {
                switch step {
                case let .set8(offset, value, count):
                    try command.issue(
                        driver.cuMemsetD8Async(address + UInt64(offset), value, count, stream), "cuMemsetD8Async")
                case let .set16(offset, value, count):
                    try command.issue(
                        driver.cuMemsetD16Async(address + UInt64(offset), value, count, stream), "cuMemsetD16Async")
                case let .set32(offset, value, count):
                    try command.issue(
                        driver.cuMemsetD32Async(address + UInt64(offset), value, count, stream), "cuMemsetD32Async")
                case let .copy(from, to, count):
                    try command.issue(
                        driver.cuMemcpyDtoDAsync(address + UInt64(to), address + UInt64(from), count, stream),
                        "cuMemcpyDtoDAsync_v2")
                }
            }
        }
        counters.recordCopy(bytes: bytes)
        return completion
    }

    /// Page-locked source memory is copied by DMA directly; pageable memory is first copied into staging blocks by
    /// this thread (the caller's memory is free to change once this returns).
    public func enqueueCopy(from source: HostAllocation, offset: Int, owner: any Sendable, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        guard destination.byteCount > 0 else { return Completion(finished: .success(nil)) }
        guard let host = UnsafeRawPointer(bitPattern: UInt(source.address) &+ UInt(offset)) else {
            throw .invalidArgument(name: "host address", value: "0", limit: "a mapped host address")
        }
        guard source.pinned else {
            return try enqueueStagedUpload(
                from: UnsafeRawBufferPointer(start: host, count: destination.byteCount), to: destination)
        }
        let target = CUDAArgumentPacking.devicePointer(destination)
        let count = destination.byteCount
        let completion = try runtime().nextLane().submit("host-to-device copy", retaining: [owner]) {
            command throws(GPUBridgeError) in
            try command.issue(driver.cuMemcpyHtoDAsync(target, host, count, command.stream), "cuMemcpyHtoDAsync_v2")
        }
        counters.recordCopy(bytes: count)
        return completion
    }

    public func enqueueCopy(copying source: UnsafeRawBufferPointer, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        guard source.count > 0 else { return Completion(finished: .success(nil)) }
        return try enqueueStagedUpload(from: source, to: destination)
    }

    /// Copies `source` into staging blocks on this thread, then enqueues one DMA per block.
    private func enqueueStagedUpload(from source: UnsafeRawBufferPointer, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        guard let base = source.baseAddress else { return Completion(finished: .success(nil)) }
        let runtime = try runtime()
        let blocks = try runtime.staging.take(byteCount: source.count)
        var offset = 0
        for block in blocks {
            block.pointer.copyMemory(from: base + offset, byteCount: block.used)
            offset += block.used
        }
        let target = CUDAArgumentPacking.devicePointer(destination)
        let completion = try runtime.nextLane().submit("host-to-device copy (staged)", retaining: blocks) {
            command throws(GPUBridgeError) in
            var offset = 0
            for block in blocks {
                try command.issue(
                    driver.cuMemcpyHtoDAsync(target + UInt64(offset), block.pointer, block.used, command.stream),
                    "cuMemcpyHtoDAsync_v2")
                offset += block.used
            }
        }
        counters.recordCopy(bytes: source.count)
        return completion
    }

    /// Page-locked destination memory is written by DMA directly; pageable memory receives the bytes from staging
    /// blocks on the completion thread, before the completion completes.
    public func enqueueCopy(from source: DeviceRegion, to destination: HostAllocation, offset: Int, owner: any Sendable)
        throws(GPUBridgeError) -> Completion
    {
        guard source.byteCount > 0 else { return Completion(finished: .success(nil)) }
        guard let host = UnsafeMutableRawPointer(bitPattern: UInt(destination.address) &+ UInt(offset)) else {
            throw .invalidArgument(name: "host address", value: "0", limit: "a mapped host address")
        }
        let origin = CUDAArgumentPacking.devicePointer(source)
        let count = source.byteCount
        let runtime = try runtime()
        guard !destination.pinned else {
            let completion = try runtime.nextLane().submit("device-to-host copy", retaining: [owner]) {
                command throws(GPUBridgeError) in
                try command.issue(
                    driver.cuMemcpyDtoHAsync(host, origin, count, command.stream), "cuMemcpyDtoHAsync_v2")
            }
            counters.recordCopy(bytes: count)
            return completion
        }
        let blocks = try runtime.staging.take(byteCount: count)
        let hostAddress = UInt(bitPattern: host)
        let completion = try runtime.nextLane().submit(
            "device-to-host copy (staged)", retaining: [owner, blocks],
            deliver: {
                var offset = 0
                for block in blocks {
                    UnsafeMutableRawPointer(bitPattern: hostAddress + UInt(offset))!.copyMemory(
                        from: block.pointer, byteCount: block.used)
                    offset += block.used
                }
            }
        ) { command throws(GPUBridgeError) in
            var offset = 0
            for block in blocks {
                try command.issue(
                    driver.cuMemcpyDtoHAsync(block.pointer, origin + UInt64(offset), block.used, command.stream),
                    "cuMemcpyDtoHAsync_v2")
                offset += block.used
            }
        }
        counters.recordCopy(bytes: count)
        return completion
    }

    /// Pinned: `cuMemHostAlloc` (portable page-locked memory). If the driver has no page-locked memory left the
    /// allocation falls back to pageable memory and says so (`pinned == false`). Pageable: 64-byte aligned
    /// `posix_memalign`.
    public func allocateHost(byteCount: Int, pinned: Bool) throws(GPUBridgeError) -> HostAllocation {
        if pinned {
            let runtime = try runtime()
            var pointer: UnsafeMutableRawPointer?
            let status = runtime.releaser.retryingOutOfMemory {
                driver.cuMemHostAlloc(&pointer, byteCount, CU.memHostAllocPortable)
            }
            if status == CU.success, let pointer {
                return HostAllocation(address: UInt64(UInt(bitPattern: pointer)), byteCount: byteCount, pinned: true)
            }
            guard status == CU.errorOutOfMemory else {
                throw health.failure(status, "cuMemHostAlloc(\(byteCount) bytes)")
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
    /// a staging copy. The registration ends with `CUDAHostRegistration.unregister()` or when the returned object
    /// goes, synchronously either way; the caller keeps the memory alive and unmoved until then.
    public func registerHostMemory(_ memory: UnsafeMutableRawBufferPointer) throws(GPUBridgeError)
        -> CUDAHostRegistration
    {
        guard let base = memory.baseAddress, memory.count > 0 else {
            throw .invalidArgument(name: "memory.count", value: String(memory.count), limit: "1...\(Int.max) bytes")
        }
        _ = try runtime()
        try health.check(
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
        let compiled = try CUDAProgram(backend: self, binary: binary, source: source)
        // A kernel declaring SGEMM runs cuBLAS in its place where cuBLAS was found.
        if source.routine == .sgemm, case let .success(cublas) = CUBLASLibrary.shared {
            return CUDALibraryGEMM(kernel: compiled, backend: self, library: cublas)
        }
        return compiled
    }

    // MARK: Queue

    /// Records a marker on every stream and suspends until each has passed: all work enqueued before the call has
    /// finished. The waiting is done by the completion threads. Before the first command there is nothing to wait for.
    public func synchronize() async throws(GPUBridgeError) {
        try health.ensureUsable()
        guard let runtime = opened.withLock({ $0 }) else { return }
        var markers: [Completion] = []
        for lane in runtime.lanes {
            markers.append(try lane.submit("synchronize") { _ throws(GPUBridgeError) in })
        }
        for marker in markers { try await marker.wait() }
    }
}
