import GPUBridge
import Glibc
import Synchronization

/// One OpenCL device, driven through the ICD loader: the allocator, compiler, program and queue roles of
/// `DeviceBackend` on top of one context and one in-order command queue with profiling.
///
/// Made by `OpenCLBackendProvider.discover()`; wrap it in a `Device` to use it. Every property is read from the driver
/// when the backend is made. Thread safety: every method may be called from any thread concurrently (OpenCL objects
/// are thread-safe; the sub-buffer and pinned-memory tables are guarded by one lock; kernels serialise their own
/// argument setting). Costs: a pool miss is one `clCreateBuffer`; the first launch with a view at a non-zero offset
/// creates one sub-buffer for that region, later launches reuse it; synchronous copies block the calling thread until
/// the driver has finished them, asynchronous ones return a `Completion` signalled by an event callback.
public final class OpenCLBackend: DeviceBackend {
    public let info: DeviceInfo
    public let counters = DeviceCounters()
    /// The platform's name (`CL_PLATFORM_NAME`), for example `Portable Computing Language`.
    public let platformName: String
    /// The platform's version string (`CL_PLATFORM_VERSION`).
    public let platformVersion: String
    /// The device's version string (`CL_DEVICE_VERSION`), for example `OpenCL 3.0 PoCL HSTR: ...`.
    public let deviceVersion: String
    /// The OpenCL C version the device compiles (`CL_DEVICE_OPENCL_C_VERSION`).
    public let openCLCVersion: String
    /// The device's extensions (`CL_DEVICE_EXTENSIONS`).
    public let extensions: Set<String>
    /// The largest single allocation the device accepts (`CL_DEVICE_MAX_MEM_ALLOC_SIZE`).
    public let maxAllocationSize: Int
    /// The ICD loader library the backend calls, as the dynamic loader resolved it.
    public var libraryPath: String { library.path }

    let library: OpenCLLibrary
    let platform: CLObject
    let device: CLObject
    /// The context and queues, shared with the launch tracker so they outlive every callback and worker job.
    let queues: OpenCLQueues
    var context: CLObject { queues.context }
    /// The in-order queue every copy, fill and launch goes through, so commands run in the order they were issued.
    var queue: CLObject { queues.queue }
    /// A second in-order queue used only to map and unmap pinned host memory, so that allocating a `HostBuffer`
    /// does not wait behind the kernels already queued on `queue`.
    var hostQueue: CLObject { queues.hostQueue }
    /// Whether `queue` records profiling times.
    let profiling: Bool
    /// Reports the completion of launches on `queue` with few event callbacks.
    let launches: OpenCLLaunchTracker
    private let memory = Mutex(MemoryTable())
    /// Completions of copies, fills and markers whose callbacks may not have run yet, so `synchronize()` can await
    /// their delivery (each has its own callback, which may run after a later command's). Pruned of completed ones
    /// when it doubles.
    private let tracked = Mutex<(completions: [Completion], pruneAt: Int)>(([], 64))
    /// Bytes of device buffers this backend holds from the driver now (pool segments; not sub-buffers, which alias).
    private let bytesAllocated = Atomic<Int>(0)

    /// Sub-buffers and pinned host memory this backend made.
    private struct MemoryTable {
        /// Cached sub-buffers by parent allocation, then by region.
        var subBuffers: [UInt64: [SubRegion: CLObject]] = [:]
        /// Pinned host memory: the mapped address and the buffer it maps.
        var pinned: [UInt64: CLObject] = [:]
    }

    private struct SubRegion: Hashable {
        let offset: Int
        let byteCount: Int
    }

    init(
        library: OpenCLLibrary, platform: CLObject, device: CLObject, ordinal: Int,
        platformName: String, platformVersion: String
    ) throws(GPUBridgeError) {
        let d = device.pointer
        let name = try library.deviceString(d, CL.deviceName)
        let vendor = try library.deviceString(d, CL.deviceVendor)
        let driverVersion = try library.deviceString(d, CL.driverVersion)
        let deviceVersion = try library.deviceString(d, CL.deviceVersion)
        let openCLCVersion = try library.deviceString(d, CL.deviceOpenCLCVersion)
        let extensions = Set(try library.deviceString(d, CL.deviceExtensions).split(separator: " ").map(String.init))
        let globalMemory = try library.deviceValue(d, CL.deviceGlobalMemSize, UInt64(0))
        let maxAllocation = try library.deviceValue(d, CL.deviceMaxMemAllocSize, UInt64(0))
        let computeUnits = try library.deviceValue(d, CL.deviceMaxComputeUnits, UInt32(0))
        let maxGroupItems = try library.deviceValue(d, CL.deviceMaxWorkGroupSize, 0 as Int)
        let dimensions = Int(try library.deviceValue(d, CL.deviceMaxWorkItemDimensions, UInt32(0)))
        let itemSizeBytes = try library.infoBytes("clGetDeviceInfo") {
            library.getDeviceInfo(d, CL.deviceMaxWorkItemSizes, $0, $1, $2)
        }
        let localMemory = try library.deviceValue(d, CL.deviceLocalMemSize, UInt64(0))
        let baseAlignBits = try library.deviceValue(d, CL.deviceMemBaseAddrAlign, UInt32(0))
        let addressBits = try library.deviceValue(d, CL.deviceAddressBits, UInt32(0))
        let queueProperties = try library.deviceValue(d, CL.deviceQueueProperties, UInt64(0))
        let deviceType = try library.deviceValue(d, CL.deviceType, UInt64(0))
        // Deprecated in OpenCL 2.0 but still answered by current drivers; fall back to the device type where not.
        let unified =
            (try? library.deviceValue(d, CL.deviceHostUnifiedMemory, UInt32(0))).map { $0 != 0 }
            ?? (deviceType & CL.deviceTypeCPU != 0)

        var itemSizes = itemSizeBytes.withUnsafeBytes { raw in
            (0..<min(dimensions, raw.count / MemoryLayout<Int>.size)).map {
                raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<Int>.size, as: Int.self)
            }
        }
        itemSizes = Array(itemSizes.prefix(3))
        while itemSizes.count < 3 { itemSizes.append(1) }
        // OpenCL has no limit on the number of work-groups, only on the global size: each dimension's
        // groups * groupSize must fit in the device's size_t. Dividing that by the largest group size of the dimension
        // keeps every launch that passes `Launch.validate` within it.
        let sizeMax = addressBits >= 63 ? Int.max : (1 << Int(addressBits)) - 1
        let maxGroups = itemSizes.map { sizeMax / max(1, $0) }
        let alignment = max(1, Int(baseAlignBits) / 8)
        let profiling = queueProperties & CL.queueProfilingEnable != 0

        self.library = library
        self.platform = platform
        self.device = device
        self.platformName = platformName
        self.platformVersion = platformVersion
        self.deviceVersion = deviceVersion
        self.openCLCVersion = openCLCVersion
        self.extensions = extensions
        self.maxAllocationSize = Int(clamping: maxAllocation)
        self.profiling = profiling
        self.info = DeviceInfo(
            id: DeviceID(backend: .opencl, ordinal: ordinal), name: name, vendor: vendor,
            driverVersion: driverVersion, architecture: "\(name) | \(deviceVersion)",
            totalMemory: Int(clamping: globalMemory), computeUnits: Int(computeUnits), maxGroupItems: maxGroupItems,
            maxGroupSize: itemSizes, maxGroups: maxGroups,
            capabilities: DeviceCapabilities(
                pinnedHostMemory: true, asyncCopies: true, sharedMemoryPerGroup: Int(clamping: localMemory),
                profiling: profiling, unifiedMemory: unified, float64: extensions.contains("cl_khr_fp64"),
                float16: extensions.contains("cl_khr_fp16"), viewOffsetAlignment: alignment, memoryPools: false))

        var properties: [Int] = [CL.contextPlatform, Int(bitPattern: platform.pointer), 0]
        var deviceList: OpaquePointer? = d
        let context = try clCreate("clCreateContext") { status in
            library.createContext(&properties, 1, &deviceList, nil, nil, status)
        }
        let queue: OpaquePointer
        let hostQueue: OpaquePointer
        do throws(GPUBridgeError) {
            queue = try clCreate("clCreateCommandQueue") {
                library.createCommandQueue(context, d, profiling ? CL.queueProfilingEnable : 0, $0)
            }
            do throws(GPUBridgeError) {
                hostQueue = try clCreate("clCreateCommandQueue") { library.createCommandQueue(context, d, 0, $0) }
            } catch {
                _ = library.releaseCommandQueue(queue)
                throw error
            }
        } catch {
            _ = library.releaseContext(context)
            throw error
        }
        let queues = OpenCLQueues(
            library: library, context: CLObject(context), queue: CLObject(queue),
            hostQueue: CLObject(hostQueue))
        self.queues = queues
        self.launches = OpenCLLaunchTracker(queues: queues, profiling: profiling)
    }

    /// A new backend for the same device, driven through `library` (tests substitute single entry points).
    func reopened(with library: OpenCLLibrary) throws(GPUBridgeError) -> OpenCLBackend {
        try OpenCLBackend(
            library: library, platform: platform, device: device, ordinal: info.id.ordinal,
            platformName: platformName, platformVersion: platformVersion)
    }

    deinit {
        // Nothing should be left (buffers keep their device, and so this backend, alive), but release what is.
        let leftovers = memory.withLock { table -> [CLObject] in
            defer { table = MemoryTable() }
            return table.subBuffers.values.flatMap(\.values) + table.pinned.values
        }
        for object in leftovers { _ = library.releaseMemObject(object.pointer) }
        // The queues and the context go with `queues`, when the tracker and its pending callbacks have let go too.
    }

    /// The device's memory minus the device buffers this backend holds now.
    ///
    /// OpenCL has no standard query for free device memory, so this is an upper bound: other processes (and other
    /// backends of this process) are not seen, and drivers may reserve memory of their own.
    public func freeMemory() throws(GPUBridgeError) -> Int {
        max(0, info.totalMemory - bytesAllocated.load(ordering: .relaxed))
    }

    // MARK: Allocator

    /// `CL_DEVICE_MEM_BASE_ADDR_ALIGN` in bytes: pool blocks start at multiples of it, so a pooled block can always
    /// be handed to a kernel as a sub-buffer.
    public var allocationGranularity: Int { info.capabilities.viewOffsetAlignment }

    public func allocate(byteCount: Int) throws(GPUBridgeError) -> UInt64 {
        guard byteCount > 0, byteCount <= maxAllocationSize else {
            throw .invalidArgument(
                name: "byteCount", value: String(byteCount),
                limit: "1...\(maxAllocationSize) bytes (CL_DEVICE_MAX_MEM_ALLOC_SIZE of \(info.id))")
        }
        var status: Int32 = CL.success
        let mem = library.createBuffer(context.pointer, CL.memReadWrite, byteCount, nil, &status)
        guard status == CL.success, let mem else {
            throw allocationError("clCreateBuffer", status, requested: byteCount)
        }
        counters.recordAllocation()
        bytesAllocated.add(byteCount, ordering: .relaxed)
        return CLObject(mem).bits
    }

    public func free(handle: UInt64, byteCount: Int) {
        guard let mem = CLObject(bits: handle) else { return }
        let subBuffers = memory.withLock { $0.subBuffers.removeValue(forKey: handle).map { Array($0.values) } ?? [] }
        for sub in subBuffers {
            _ = library.releaseMemObject(sub.pointer)
            counters.recordFree()
        }
        // Does not block: the driver deletes the buffer once commands using it have finished.
        _ = library.releaseMemObject(mem.pointer)
        counters.recordFree()
        bytesAllocated.subtract(byteCount, ordering: .relaxed)
    }

    /// Releases the cached sub-buffers that lie inside `region`.
    ///
    /// When a pool block is retired, every view of it is gone, so every sub-buffer inside the block can go. When a view
    /// is retired, a sub-buffer another live view of the same bytes still uses may be released too; that view gets a
    /// new one on its next launch (launches hold a reference while they use one, so none is freed under them). Cost:
    /// O(1) when the allocation has no sub-buffers, else linear in its sub-buffers.
    public func regionRetired(_ region: DeviceRegion) {
        let released = memory.withLock { table -> [CLObject] in
            guard var subs = table.subBuffers[region.handle] else { return [] }
            var out: [CLObject] = []
            if let exact = subs.removeValue(forKey: SubRegion(offset: region.offset, byteCount: region.byteCount)) {
                out.append(exact)
            }
            let end = region.offset + region.byteCount
            for (key, sub) in subs where key.offset >= region.offset && key.offset + key.byteCount <= end {
                subs[key] = nil
                out.append(sub)
            }
            table.subBuffers[region.handle] = subs.isEmpty ? nil : subs
            return out
        }
        for sub in released {
            _ = library.releaseMemObject(sub.pointer)
            counters.recordFree()
        }
    }

    /// The memory object a kernel argument for `region` is: the allocation itself at offset 0, else a sub-buffer made
    /// once per region and cached. A returned sub-buffer carries an extra reference the caller releases after use.
    func kernelMemory(for region: DeviceRegion) throws(GPUBridgeError) -> (memory: OpaquePointer, retained: Bool) {
        let parent = try memoryObject(region)
        // At offset 0 the allocation itself starts at the right byte; the kernel sees the rest of the allocation
        // after the region's end, as a CUDA kernel given a base pointer would.
        guard region.offset != 0 else { return (parent, false) }
        let alignment = info.capabilities.viewOffsetAlignment
        guard region.offset % alignment == 0 else {
            throw .invalidArgument(
                name: "view offset", value: String(region.offset),
                limit:
                    "multiples of \(alignment) bytes, the view alignment (CL_DEVICE_MEM_BASE_ADDR_ALIGN) of \(info.id)")
        }
        let key = SubRegion(offset: region.offset, byteCount: region.byteCount)
        let library = library
        // Take a reference under the lock, so a concurrent `regionRetired` cannot free the sub-buffer while in use.
        if let cached = memory.withLock({ table -> CLObject? in
            guard let sub = table.subBuffers[region.handle]?[key] else { return nil }
            _ = library.retainMemObject(sub.pointer)
            return sub
        }) {
            return (cached.pointer, true)
        }
        var bounds = (region.offset, region.byteCount)  // cl_buffer_region { size_t origin; size_t size; }
        let sub = try clCreate("clCreateSubBuffer") { status in
            library.createSubBuffer(parent, CL.memReadWrite, CL.bufferCreateTypeRegion, &bounds, status)
        }
        counters.recordAllocation()
        let created = CLObject(sub)
        let (chosen, redundant) = memory.withLock { table -> (CLObject, CLObject?) in
            if let existing = table.subBuffers[region.handle]?[key] {
                _ = library.retainMemObject(existing.pointer)
                return (existing, created)
            }
            table.subBuffers[region.handle, default: [:]][key] = created
            _ = library.retainMemObject(created.pointer)
            return (created, nil)
        }
        if let redundant {
            // Another launch made the same sub-buffer first.
            _ = library.releaseMemObject(redundant.pointer)
            counters.recordFree()
        }
        return (chosen.pointer, true)
    }

    /// The allocation's memory object.
    @inline(__always)
    func memoryObject(_ region: DeviceRegion) throws(GPUBridgeError) -> OpaquePointer {
        guard let mem = CLObject(bits: region.handle) else {
            throw .invalidArgument(name: "region.handle", value: "0", limit: "a cl_mem made by OpenCLBackend.allocate")
        }
        return mem.pointer
    }

    private func allocationError(_ call: StaticString, _ status: Int32, requested: Int) -> GPUBridgeError {
        switch status {
        case CL.memObjectAllocationFailure, CL.outOfResources, CL.outOfHostMemory:
            return .outOfMemory(
                device: info.id.description, requested: requested, inUse: 0, cached: 0,
                limit: info.totalMemory, detail: "\(call) returned \(openCLStatusName(status))")
        case CL.success:
            return .backendFailure(
                backend: "opencl", call: call.description, code: 0, message: "CL_SUCCESS but no memory object returned")
        default:
            return .openCL(call.description, status)
        }
    }

    // MARK: Copies

    public func copy(from source: UnsafeRawBufferPointer, to destination: DeviceRegion) throws(GPUBridgeError) {
        guard let base = source.baseAddress, source.count > 0 else { return }
        let mem = try memoryObject(destination)
        try clCheck(
            "clEnqueueWriteBuffer",
            library.enqueueWriteBuffer(queue.pointer, mem, CL.true, destination.offset, source.count, base, 0, nil, nil)
        )
        counters.recordCopy(bytes: source.count)
    }

    public func copy(from source: DeviceRegion, to destination: UnsafeMutableRawBufferPointer) throws(GPUBridgeError) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        let mem = try memoryObject(source)
        try clCheck(
            "clEnqueueReadBuffer",
            library.enqueueReadBuffer(queue.pointer, mem, CL.true, source.offset, destination.count, base, 0, nil, nil))
        counters.recordCopy(bytes: destination.count)
    }

    public func enqueueCopy(from source: DeviceRegion, to destination: DeviceRegion) throws(GPUBridgeError)
        -> Completion
    {
        let from = try memoryObject(source)
        let to = try memoryObject(destination)
        let completion = try track("clEnqueueCopyBuffer", owner: nil) { event in
            library.enqueueCopyBuffer(
                queue.pointer, from, to, source.offset, destination.offset, source.byteCount, 0, nil, event)
        }
        counters.recordCopy(bytes: source.byteCount)
        return completion
    }

    public func enqueueFill(_ destination: DeviceRegion, pattern: [UInt8]) throws(GPUBridgeError) -> Completion {
        let mem = try memoryObject(destination)
        // The driver copies the pattern before clEnqueueFillBuffer returns.
        let completion = try track("clEnqueueFillBuffer", owner: nil) { event in
            pattern.withUnsafeBytes { bytes in
                library.enqueueFillBuffer(
                    queue.pointer, mem, bytes.baseAddress, bytes.count, destination.offset, destination.byteCount, 0,
                    nil, event)
            }
        }
        counters.recordCopy(bytes: destination.byteCount)
        return completion
    }

    public func enqueueCopy(from source: HostAllocation, offset: Int, owner: any Sendable, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        let mem = try memoryObject(destination)
        let host = try hostPointer(source, offset: offset)
        let completion = try track("clEnqueueWriteBuffer", owner: owner) { event in
            library.enqueueWriteBuffer(
                queue.pointer, mem, CL.false, destination.offset, destination.byteCount, host, 0, nil, event)
        }
        counters.recordCopy(bytes: destination.byteCount)
        return completion
    }

    public func enqueueCopy(from source: DeviceRegion, to destination: HostAllocation, offset: Int, owner: any Sendable)
        throws(GPUBridgeError) -> Completion
    {
        let mem = try memoryObject(source)
        let host = try hostPointer(destination, offset: offset)
        let completion = try track("clEnqueueReadBuffer", owner: owner) { event in
            library.enqueueReadBuffer(
                queue.pointer, mem, CL.false, source.offset, source.byteCount, host, 0, nil, event)
        }
        counters.recordCopy(bytes: source.byteCount)
        return completion
    }

    private func hostPointer(_ allocation: HostAllocation, offset: Int) throws(GPUBridgeError)
        -> UnsafeMutableRawPointer
    {
        guard let base = UnsafeMutableRawPointer(bitPattern: UInt(allocation.address)) else {
            throw .invalidArgument(name: "host address", value: "0", limit: "memory from allocateHost")
        }
        return base + offset
    }

    // MARK: Host memory

    /// Pinned: a `CL_MEM_ALLOC_HOST_PTR` buffer mapped for reading and writing (the portable way to get memory the
    /// driver can transfer from directly; the driver decides how it pins it). Not pinned: page-aligned `malloc` memory.
    public func allocateHost(byteCount: Int, pinned: Bool) throws(GPUBridgeError) -> HostAllocation {
        if pinned {
            var status: Int32 = CL.success
            guard
                let mem = library.createBuffer(
                    context.pointer, CL.memReadWrite | CL.memAllocHostPtr, byteCount, nil, &status),
                status == CL.success
            else {
                throw allocationError("clCreateBuffer", status, requested: byteCount)
            }
            // Blocking, on the host queue, which holds nothing but maps and unmaps.
            let address = library.enqueueMapBuffer(
                hostQueue.pointer, mem, CL.true, CL.mapRead | CL.mapWrite, 0, byteCount, 0, nil, nil, &status)
            guard status == CL.success, let address else {
                _ = library.releaseMemObject(mem)
                throw allocationError("clEnqueueMapBuffer", status, requested: byteCount)
            }
            counters.recordAllocation()
            let key = UInt64(UInt(bitPattern: address))
            memory.withLock { $0.pinned[key] = CLObject(mem) }
            return HostAllocation(address: key, byteCount: byteCount, pinned: true)
        }
        var pointer: UnsafeMutableRawPointer?
        let status = posix_memalign(&pointer, Int(sysconf(Int32(_SC_PAGESIZE))), byteCount)
        guard status == 0, let pointer else {
            throw .outOfMemory(
                device: "host", requested: byteCount, inUse: 0, cached: 0, limit: info.totalMemory,
                detail: "posix_memalign returned \(status)")
        }
        return HostAllocation(address: UInt64(UInt(bitPattern: pointer)), byteCount: byteCount, pinned: false)
    }

    /// Unmaps and releases pinned memory (non-blocking: the unmap is enqueued and the buffer is deleted after it), or
    /// frees unpinned memory.
    public func freeHost(_ allocation: HostAllocation) {
        let pointer = UnsafeMutableRawPointer(bitPattern: UInt(allocation.address))
        guard let mem = memory.withLock({ $0.pinned.removeValue(forKey: allocation.address) }) else {
            Glibc.free(pointer)
            return
        }
        _ = library.enqueueUnmapMemObject(hostQueue.pointer, mem.pointer, pointer, 0, nil, nil)
        _ = library.flush(hostQueue.pointer)
        _ = library.releaseMemObject(mem.pointer)
        counters.recordFree()
    }

    // MARK: Queue

    /// Enqueues a marker behind everything already queued and suspends until its callback fires and every command
    /// enqueued before it has had its completion delivered; no thread blocks.
    public func synchronize() async throws(GPUBridgeError) {
        let lastLaunch = launches.lastPending
        let earlier = tracked.withLock { $0.completions }
        let completion = try track("clEnqueueMarkerWithWaitList", owner: nil) { event in
            library.enqueueMarkerWithWaitList(queue.pointer, 0, nil, event)
        }
        try await completion.wait()
        // The marker ran after every launch before it (one in-order queue): report them now rather than at their
        // next armed callback.
        if let lastLaunch { launches.finished(through: lastLaunch) }
        // Every command before the marker has ended, but each copy or fill reports through its own callback, which
        // may run after the marker's: wait for those deliveries too. Their errors belong to their own completions.
        for command in earlier { _ = try? await command.wait() }
    }

    /// Runs `enqueue` with an event out-parameter and returns a completion signalled by the event's callback.
    func track(_ call: StaticString, owner: (any Sendable)?, _ enqueue: (UnsafeMutablePointer<OpaquePointer?>) -> Int32)
        throws(GPUBridgeError) -> Completion
    {
        var event: OpaquePointer?
        try clCheck(call, enqueue(&event))
        return try completion(for: event, call: call, owner: owner)
    }

    /// Registers the `CL_COMPLETE` callback of `event` (taking over the caller's reference to it), flushes the queue
    /// so the command is submitted, and returns the completion the callback will signal.
    func completion(for event: OpaquePointer?, call: StaticString, owner: (any Sendable)?) throws(GPUBridgeError)
        -> Completion
    {
        guard let event else {
            throw .backendFailure(
                backend: "opencl", call: call.description, code: 0, message: "CL_SUCCESS but no event returned")
        }
        let completion = Completion()
        let box = EventCompletion(
            completion: completion, library: library, call: call.description, profiling: profiling, owner: owner)
        let userData = Unmanaged.passRetained(box).toOpaque()
        let status = library.setEventCallback(event, CL.complete, openCLEventCallback, userData)
        guard status == CL.success else {
            Unmanaged<EventCompletion>.fromOpaque(userData).release()
            // The command is queued and may still use the owner's memory: let it finish before the owner can go.
            _ = library.finish(queue.pointer)
            _ = library.releaseEvent(event)
            throw .openCL("clSetEventCallback", status)
        }
        try clCheck("clFlush", library.flush(queue.pointer))
        tracked.withLock { state in
            if state.completions.count >= state.pruneAt {
                state.completions.removeAll { $0.isSettled }
                state.pruneAt = max(64, state.completions.count * 2)
            }
            state.completions.append(completion)
        }
        return completion
    }
}
