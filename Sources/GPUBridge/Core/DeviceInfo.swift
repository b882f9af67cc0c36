/// What a device can do, as read from its driver when it was discovered.
public struct DeviceCapabilities: Sendable, Hashable, Codable {
    /// The backend can allocate page-locked host memory that the device reads directly (faster async copies).
    public var pinnedHostMemory: Bool
    /// Copies can run asynchronously with respect to the host.
    public var asyncCopies: Bool
    /// Bytes of fast on-chip memory one work-group may use (CUDA shared memory, OpenCL local memory).
    public var sharedMemoryPerGroup: Int
    /// The device can measure start and end times of its commands.
    public var profiling: Bool
    /// Device memory is the host's memory (CPU backend, PoCL).
    public var unifiedMemory: Bool
    /// Double precision arithmetic is supported.
    public var float64: Bool
    /// Half precision arithmetic is supported.
    public var float16: Bool
    /// Byte alignment a buffer offset must meet to be handed to a kernel as its own argument
    /// (OpenCL `CL_DEVICE_MEM_BASE_ADDR_ALIGN`; 1 where any element-aligned offset works).
    public var viewOffsetAlignment: Int
    /// The device supports a stream-ordered memory pool (CUDA `cuMemAllocAsync`).
    public var memoryPools: Bool

    public init(
        pinnedHostMemory: Bool, asyncCopies: Bool, sharedMemoryPerGroup: Int, profiling: Bool,
        unifiedMemory: Bool, float64: Bool, float16: Bool, viewOffsetAlignment: Int, memoryPools: Bool
    ) {
        self.pinnedHostMemory = pinnedHostMemory
        self.asyncCopies = asyncCopies
        self.sharedMemoryPerGroup = sharedMemoryPerGroup
        self.profiling = profiling
        self.unifiedMemory = unifiedMemory
        self.float64 = float64
        self.float16 = float16
        self.viewOffsetAlignment = viewOffsetAlignment
        self.memoryPools = memoryPools
    }
}

/// A device as discovered: identity, names and limits. A value; the live object is `Device`.
public struct DeviceInfo: Sendable, Hashable, Codable {
    public var id: DeviceID
    /// The device's marketing name (`NVIDIA H100 80GB HBM3`, `cpu-x86-64-...`).
    public var name: String
    public var vendor: String
    /// Driver or platform version string.
    public var driverVersion: String
    /// The architecture the compiler targets (`sm_90`, an OpenCL device version, `x86_64`). Part of cache keys.
    public var architecture: String
    /// Total device memory in bytes.
    public var totalMemory: Int
    /// Streaming multiprocessors, OpenCL compute units or CPU cores.
    public var computeUnits: Int
    /// Largest number of work-items (threads) in one work-group (block).
    public var maxGroupItems: Int
    /// Largest work-group (block) size per dimension.
    public var maxGroupSize: [Int]
    /// Largest number of work-groups (grid size) per dimension.
    public var maxGroups: [Int]
    public var capabilities: DeviceCapabilities

    public init(
        id: DeviceID, name: String, vendor: String, driverVersion: String, architecture: String,
        totalMemory: Int, computeUnits: Int, maxGroupItems: Int, maxGroupSize: [Int], maxGroups: [Int],
        capabilities: DeviceCapabilities
    ) {
        self.id = id
        self.name = name
        self.vendor = vendor
        self.driverVersion = driverVersion
        self.architecture = architecture
        self.totalMemory = totalMemory
        self.computeUnits = computeUnits
        self.maxGroupItems = maxGroupItems
        self.maxGroupSize = maxGroupSize
        self.maxGroups = maxGroups
        self.capabilities = capabilities
    }
}
