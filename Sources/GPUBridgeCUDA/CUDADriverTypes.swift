/// CUDA driver API types, constants and C function signatures, transcribed from `cuda.h` (CUDA 13.x; every value
/// used here is unchanged since CUDA 12.0). Only what this backend calls is declared.
///
/// Handles (`CUcontext`, `CUstream`, `CUevent`, `CUmodule`, `CUfunction`) are opaque pointers; `CUdeviceptr` is
/// `unsigned long long` on 64-bit hosts; `CUdevice` is `int`; `CUresult` and the attribute enums are C enums (`int`).
enum CU {
    typealias Result = Int32
    typealias Device = Int32
    typealias DevicePointer = UInt64
    typealias Handle = OpaquePointer

    // CUresult
    static let success: Result = 0  // CUDA_SUCCESS
    static let errorInvalidValue: Result = 1  // CUDA_ERROR_INVALID_VALUE
    static let errorOutOfMemory: Result = 2  // CUDA_ERROR_OUT_OF_MEMORY
    static let errorNotInitialized: Result = 3  // CUDA_ERROR_NOT_INITIALIZED
    static let errorNoDevice: Result = 100  // CUDA_ERROR_NO_DEVICE
    static let errorInvalidImage: Result = 200  // CUDA_ERROR_INVALID_IMAGE
    static let errorNoBinaryForGPU: Result = 209  // CUDA_ERROR_NO_BINARY_FOR_GPU
    static let errorInvalidPTX: Result = 218  // CUDA_ERROR_INVALID_PTX
    static let errorUnsupportedPTXVersion: Result = 222  // CUDA_ERROR_UNSUPPORTED_PTX_VERSION
    static let errorNotFound: Result = 500  // CUDA_ERROR_NOT_FOUND
    static let errorNotReady: Result = 600  // CUDA_ERROR_NOT_READY
    static let errorHostMemoryAlreadyRegistered: Result = 712  // CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED
    // Errors after which the context is unusable for the rest of the process ("sticky"; cuda.h says each "leaves the
    // process in an inconsistent state and any further CUDA work will return the same error").
    static let errorECCUncorrectable: Result = 214  // CUDA_ERROR_ECC_UNCORRECTABLE
    static let errorIllegalAddress: Result = 700  // CUDA_ERROR_ILLEGAL_ADDRESS
    static let errorLaunchTimeout: Result = 702  // CUDA_ERROR_LAUNCH_TIMEOUT
    static let errorAssert: Result = 710  // CUDA_ERROR_ASSERT
    static let errorHardwareStackError: Result = 714  // CUDA_ERROR_HARDWARE_STACK_ERROR
    static let errorIllegalInstruction: Result = 715  // CUDA_ERROR_ILLEGAL_INSTRUCTION
    static let errorMisalignedAddress: Result = 716  // CUDA_ERROR_MISALIGNED_ADDRESS
    static let errorInvalidAddressSpace: Result = 717  // CUDA_ERROR_INVALID_ADDRESS_SPACE
    static let errorInvalidPC: Result = 718  // CUDA_ERROR_INVALID_PC
    static let errorLaunchFailed: Result = 719  // CUDA_ERROR_LAUNCH_FAILED

    // CUdevice_attribute
    static let attributeMaxThreadsPerBlock: Int32 = 1
    static let attributeMaxBlockDimX: Int32 = 2
    static let attributeMaxBlockDimY: Int32 = 3
    static let attributeMaxBlockDimZ: Int32 = 4
    static let attributeMaxGridDimX: Int32 = 5
    static let attributeMaxGridDimY: Int32 = 6
    static let attributeMaxGridDimZ: Int32 = 7
    static let attributeMaxSharedMemoryPerBlock: Int32 = 8
    static let attributeWarpSize: Int32 = 10
    static let attributeMultiprocessorCount: Int32 = 16
    static let attributeIntegrated: Int32 = 18
    static let attributeConcurrentKernels: Int32 = 31
    static let attributePCIBusID: Int32 = 33
    static let attributePCIDeviceID: Int32 = 34
    static let attributeL2CacheSize: Int32 = 38
    static let attributeAsyncEngineCount: Int32 = 40
    static let attributeUnifiedAddressing: Int32 = 41
    static let attributePCIDomainID: Int32 = 50
    static let attributeComputeCapabilityMajor: Int32 = 75
    static let attributeComputeCapabilityMinor: Int32 = 76
    static let attributeManagedMemory: Int32 = 83
    static let attributeMaxSharedMemoryPerBlockOptin: Int32 = 97
    static let attributeHostRegisterSupported: Int32 = 99
    static let attributeMemoryPoolsSupported: Int32 = 115

    // CUfunction_attribute
    static let functionAttributeSharedSizeBytes: Int32 = 1
    static let functionAttributeNumRegs: Int32 = 4
    static let functionAttributeMaxDynamicSharedSizeBytes: Int32 = 8

    // Flags
    static let streamNonBlocking: UInt32 = 0x1  // CU_STREAM_NON_BLOCKING
    static let eventBlockingSync: UInt32 = 0x1  // CU_EVENT_BLOCKING_SYNC (timing stays enabled)
    static let memHostAllocPortable: UInt32 = 0x01  // CU_MEMHOSTALLOC_PORTABLE
    static let memHostRegisterPortable: UInt32 = 0x01  // CU_MEMHOSTREGISTER_PORTABLE
    static let getProcAddressLegacyStream: UInt64 = 1  // CU_GET_PROC_ADDRESS_LEGACY_STREAM
    static let getProcAddressSuccess: Int32 = 0  // CU_GET_PROC_ADDRESS_SUCCESS

    /// Dynamic shared memory a kernel may use without opting in (`CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`).
    static let defaultDynamicSharedLimit = 48 * 1024

    // C signatures (cuda.h).
    typealias GetErrorString = @convention(c) (Result, UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Result
    typealias Init = @convention(c) (UInt32) -> Result
    typealias DriverGetVersion = @convention(c) (UnsafeMutablePointer<Int32>?) -> Result
    /// `cuGetProcAddress_v2(symbol, pfn, cudaVersion, flags, symbolStatus)` (CUDA 12.0+).
    typealias GetProcAddressV2 =
        @convention(c) (
            UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int32, UInt64,
            UnsafeMutablePointer<Int32>?
        ) -> Result
    /// `cuGetProcAddress(symbol, pfn, cudaVersion, flags)` (CUDA 11.3 to 11.8).
    typealias GetProcAddressV1 =
        @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int32, UInt64) -> Result

    typealias DeviceGetCount = @convention(c) (UnsafeMutablePointer<Int32>?) -> Result
    typealias DeviceGet = @convention(c) (UnsafeMutablePointer<Device>?, Int32) -> Result
    typealias DeviceGetName = @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Device) -> Result
    typealias DeviceGetAttribute = @convention(c) (UnsafeMutablePointer<Int32>?, Int32, Device) -> Result
    typealias DeviceTotalMem = @convention(c) (UnsafeMutablePointer<Int>?, Device) -> Result
    typealias DeviceGetPCIBusId = @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Device) -> Result
    typealias DevicePrimaryCtxRetain = @convention(c) (UnsafeMutablePointer<Handle?>?, Device) -> Result
    typealias DevicePrimaryCtxRelease = @convention(c) (Device) -> Result
    typealias CtxSetCurrent = @convention(c) (Handle?) -> Result

    typealias MemGetInfo = @convention(c) (UnsafeMutablePointer<Int>?, UnsafeMutablePointer<Int>?) -> Result
    typealias MemAlloc = @convention(c) (UnsafeMutablePointer<DevicePointer>?, Int) -> Result
    typealias MemFree = @convention(c) (DevicePointer) -> Result
    typealias MemcpyHtoDAsync = @convention(c) (DevicePointer, UnsafeRawPointer?, Int, Handle?) -> Result
    typealias MemcpyDtoHAsync = @convention(c) (UnsafeMutableRawPointer?, DevicePointer, Int, Handle?) -> Result
    typealias MemcpyDtoDAsync = @convention(c) (DevicePointer, DevicePointer, Int, Handle?) -> Result
    typealias MemsetD8Async = @convention(c) (DevicePointer, UInt8, Int, Handle?) -> Result
    typealias MemsetD16Async = @convention(c) (DevicePointer, UInt16, Int, Handle?) -> Result
    typealias MemsetD32Async = @convention(c) (DevicePointer, UInt32, Int, Handle?) -> Result
    /// `cuMemsetD2D8Async(dstDevice, dstPitch, uc, Width, Height, hStream)`.
    typealias MemsetD2D8Async = @convention(c) (DevicePointer, Int, UInt8, Int, Int, Handle?) -> Result
    /// `cuMemsetD2D32Async(dstDevice, dstPitch, ui, Width, Height, hStream)`.
    typealias MemsetD2D32Async = @convention(c) (DevicePointer, Int, UInt32, Int, Int, Handle?) -> Result
    typealias MemHostAlloc = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int, UInt32) -> Result
    typealias MemFreeHost = @convention(c) (UnsafeMutableRawPointer?) -> Result
    typealias MemHostRegister = @convention(c) (UnsafeMutableRawPointer?, Int, UInt32) -> Result
    typealias MemHostUnregister = @convention(c) (UnsafeMutableRawPointer?) -> Result

    typealias StreamCreate = @convention(c) (UnsafeMutablePointer<Handle?>?, UInt32) -> Result
    typealias StreamDestroy = @convention(c) (Handle?) -> Result
    typealias EventCreate = @convention(c) (UnsafeMutablePointer<Handle?>?, UInt32) -> Result
    typealias EventRecord = @convention(c) (Handle?, Handle?) -> Result
    typealias EventSynchronize = @convention(c) (Handle?) -> Result
    typealias EventElapsedTime = @convention(c) (UnsafeMutablePointer<Float>?, Handle?, Handle?) -> Result
    typealias EventDestroy = @convention(c) (Handle?) -> Result

    typealias ModuleLoadData = @convention(c) (UnsafeMutablePointer<Handle?>?, UnsafeRawPointer?) -> Result
    typealias ModuleUnload = @convention(c) (Handle?) -> Result
    typealias ModuleGetFunction =
        @convention(c) (UnsafeMutablePointer<Handle?>?, Handle?, UnsafePointer<CChar>?) -> Result
    typealias FuncSetAttribute = @convention(c) (Handle?, Int32, Int32) -> Result
    typealias FuncGetAttribute = @convention(c) (UnsafeMutablePointer<Int32>?, Int32, Handle?) -> Result
    /// `cuFuncGetParamInfo(func, paramIndex, paramOffset, paramSize)` (CUDA 12.4+).
    typealias FuncGetParamInfo =
        @convention(c) (Handle?, Int, UnsafeMutablePointer<Int>?, UnsafeMutablePointer<Int>?) -> Result
    /// `cuFuncGetParamCount(func, paramCount)` (CUDA 13.2+).
    typealias FuncGetParamCount = @convention(c) (Handle?, UnsafeMutablePointer<Int>?) -> Result
    /// `cuLaunchKernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
    /// kernelParams, extra)`.
    typealias LaunchKernel =
        @convention(c) (
            Handle?, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, Handle?,
            UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
            UnsafeMutablePointer<UnsafeMutableRawPointer?>?
        ) -> Result
}

/// An opaque CUDA handle (`CUcontext`, `CUstream`, `CUevent`, `CUmodule`, `CUfunction`) stored as an integer so that
/// the types holding it are `Sendable`: the handle is an immutable token; what may be done with it concurrently is
/// the driver's thread-safety contract (all driver API calls are thread-safe).
struct CUHandle: Sendable, Hashable {
    let raw: UInt

    init(_ pointer: OpaquePointer?) { raw = UInt(bitPattern: pointer) }

    var pointer: OpaquePointer? { OpaquePointer(bitPattern: raw) }
}
