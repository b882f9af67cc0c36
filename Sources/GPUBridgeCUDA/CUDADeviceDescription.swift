import GPUBridge

/// What the driver reports about a CUDA device beyond `DeviceInfo`. A field is nil when the driver would not answer
/// that attribute (it is then not guessed); the device stays usable.
public struct CUDADeviceProperties: Sendable, Hashable, Codable {
    /// Compute capability, for example 9.0 on an H100.
    public var computeCapabilityMajor: Int
    public var computeCapabilityMinor: Int
    public var multiprocessors: Int
    public var warpSize: Int
    /// Shared memory a block may use without opting in (48 KiB on current GPUs).
    public var sharedMemoryPerBlock: Int
    /// Shared memory a block may use after opting in (`CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN`),
    /// static and dynamic together; the backend opts a kernel in when a launch needs more than 48 KiB in all.
    public var sharedMemoryPerBlockOptin: Int?
    public var l2CacheBytes: Int?
    /// Copy engines that can run beside kernels.
    public var asyncEngines: Int?
    /// The device shares one virtual address space with the host.
    public var unifiedAddressing: Bool?
    public var managedMemory: Bool?
    public var concurrentKernels: Bool?
    /// `cuMemAllocAsync` and memory pools are supported.
    public var memoryPools: Bool?
    /// `cuMemHostRegister` is supported.
    public var hostRegister: Bool?
    /// An integrated GPU that uses the host's memory.
    public var integrated: Bool?
    /// PCI address, for example `0000:00:04.0`.
    public var pciBusID: String?

    /// The shared memory a block may use at most (the opt-in limit where known).
    public var sharedMemoryLimit: Int { max(sharedMemoryPerBlock, sharedMemoryPerBlockOptin ?? 0) }
}

/// A CUDA device as discovery lists it: read with `cuDeviceGet*` calls only, without creating a context, starting a
/// thread or touching device memory.
///
/// The attributes a launch depends on (compute capability, multiprocessors, warp size, block and grid limits, shared
/// memory per block) are required: if the driver refuses one, the device is reported unusable with that attribute's
/// name. The others are optional (nil in `CUDADeviceProperties`). A value type; built once per device.
public struct CUDADeviceDescription: Sendable, Hashable {
    public var info: DeviceInfo
    public var properties: CUDADeviceProperties

    /// Builds the description from the driver's answers. `attribute(id, name)` returns the value of
    /// `CUdevice_attribute` `id` or throws the driver's error; `busID` is nil when the driver did not give it.
    public static func read(
        ordinal: Int, name: String, totalMemory: Int, busID: String?, driverVersion: String,
        attribute: (Int32, String) throws(GPUBridgeError) -> Int
    ) throws(GPUBridgeError) -> CUDADeviceDescription {
        func optional(_ id: Int32, _ label: String) -> Int? {
            do { return try attribute(id, label) } catch { return nil }
        }
        func flag(_ id: Int32, _ label: String) -> Bool? { optional(id, label).map { $0 != 0 } }
        let major = try attribute(CU.attributeComputeCapabilityMajor, "COMPUTE_CAPABILITY_MAJOR")
        let minor = try attribute(CU.attributeComputeCapabilityMinor, "COMPUTE_CAPABILITY_MINOR")
        let sharedDefault = try attribute(CU.attributeMaxSharedMemoryPerBlock, "MAX_SHARED_MEMORY_PER_BLOCK")
        let properties = CUDADeviceProperties(
            computeCapabilityMajor: major, computeCapabilityMinor: minor,
            multiprocessors: try attribute(CU.attributeMultiprocessorCount, "MULTIPROCESSOR_COUNT"),
            warpSize: try attribute(CU.attributeWarpSize, "WARP_SIZE"),
            sharedMemoryPerBlock: sharedDefault,
            sharedMemoryPerBlockOptin: optional(
                CU.attributeMaxSharedMemoryPerBlockOptin, "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN"),
            l2CacheBytes: optional(CU.attributeL2CacheSize, "L2_CACHE_SIZE"),
            asyncEngines: optional(CU.attributeAsyncEngineCount, "ASYNC_ENGINE_COUNT"),
            unifiedAddressing: flag(CU.attributeUnifiedAddressing, "UNIFIED_ADDRESSING"),
            managedMemory: flag(CU.attributeManagedMemory, "MANAGED_MEMORY"),
            concurrentKernels: flag(CU.attributeConcurrentKernels, "CONCURRENT_KERNELS"),
            memoryPools: flag(CU.attributeMemoryPoolsSupported, "MEMORY_POOLS_SUPPORTED"),
            hostRegister: flag(CU.attributeHostRegisterSupported, "HOST_REGISTER_SUPPORTED"),
            integrated: flag(CU.attributeIntegrated, "INTEGRATED"),
            pciBusID: busID)
        let info = DeviceInfo(
            id: DeviceID(backend: .cuda, ordinal: ordinal), name: name, vendor: "NVIDIA",
            driverVersion: "CUDA \(driverVersion) driver", architecture: "sm_\(major)\(minor)",
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
                pinnedHostMemory: true, asyncCopies: (properties.asyncEngines ?? 0) > 0,
                sharedMemoryPerGroup: properties.sharedMemoryLimit, profiling: true,
                unifiedMemory: properties.integrated ?? false, float64: true, float16: major * 10 + minor >= 53,
                viewOffsetAlignment: 1, memoryPools: properties.memoryPools ?? false))
        return CUDADeviceDescription(info: info, properties: properties)
    }
}
