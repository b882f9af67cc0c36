import GPUBridge
import Synchronization

/// A compiled kernel loaded on one CUDA device: its module (`cuModuleLoadData`, once per binary and device; `Device`
/// caches programs by cache key) and its function (`cuModuleGetFunction`, looked up once at load).
///
/// A launch checks each argument's size against the parameter sizes the driver reports (`cuFuncGetParamInfo`, CUDA
/// 12.4+), packs the arguments (`CUDAArgumentPacking`), opts the function in to more than 48 KiB of shared memory
/// when static + dynamic exceed it (`CUDASharedMemory`; `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`, once per
/// larger size), and calls `cuLaunchKernel` between two events on the next stream. It allocates no device memory
/// and copies nothing. `CUDA_ERROR_OUT_OF_MEMORY` from the load, the lookup or the launch is `outOfMemory`, retried
/// after queued frees (and by `Device` after trimming its pool).
///
/// Ownership: `Device` and `Kernel` hold the program, and every launch's `Completion` holds it until the kernel has
/// finished, so the module is never unloaded under a running kernel; the unload runs on the housekeeping thread.
/// Thread safety: any thread may launch concurrently.
final class CUDAProgram: KernelProgram {
    let entryPoint: String
    let parameterCount: Int?
    /// Each parameter's size in bytes (`cuFuncGetParamInfo`), nil when the driver cannot say.
    let parameterSizes: [Int]?
    /// Static shared memory the kernel declares (`CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES`).
    let staticSharedBytes: Int
    /// Registers per thread (`CU_FUNC_ATTRIBUTE_NUM_REGS`).
    let registers: Int
    private let backend: CUDABackend
    private let module: CUHandle
    private let function: CUHandle
    private let label: String
    /// The dynamic shared memory the function is opted in to (nothing above the default until a launch needs it).
    private let dynamicSharedLimit = Mutex<Int>(0)

    init(backend: CUDABackend, binary: KernelBinary, source: KernelSource) throws(GPUBridgeError) {
        let driver = backend.driver
        var image: [UInt8]
        switch binary.format {
        case "cubin":
            guard binary.bytes.starts(with: [0x7F, 0x45, 0x4C, 0x46]) else {
                throw .invalidArgument(
                    name: "binary of '\(source.name)'", value: "\(binary.bytes.count) bytes without an ELF header",
                    limit: "a cubin made by NVRTC")
            }
            image = binary.bytes
        case "ptx":
            image = binary.bytes
            image.append(0)  // cuModuleLoadData reads PTX as a NUL-terminated string
        default:
            throw .unsupported(feature: "loading '\(binary.format)' binaries ('\(source.name)')", backend: "cuda")
        }
        let runtime = try backend.runtime()
        let health = backend.health
        var module: OpaquePointer?
        let status = runtime.releaser.retryingOutOfMemory {
            image.withUnsafeBytes { driver.cuModuleLoadData(&module, $0.baseAddress) }
        }
        guard status == CU.success else {
            throw health.failure(
                status, "cuModuleLoadData", Self.loadHint(status, binary: binary, backend: backend, name: source.name))
        }
        var function: OpaquePointer?
        let found = runtime.releaser.retryingOutOfMemory {
            driver.cuModuleGetFunction(&function, module, source.entryPoint)
        }
        guard found == CU.success else {
            _ = driver.cuModuleUnload(module)
            if found == CU.errorNotFound {
                throw .notFound(
                    kind: "CUDA kernel in '\(source.name)' (declare it extern \"C\" __global__)",
                    name: source.entryPoint)
            }
            throw health.failure(found, "cuModuleGetFunction(\(source.entryPoint))")
        }
        var value: Int32 = 0
        staticSharedBytes =
            driver.cuFuncGetAttribute(&value, CU.functionAttributeSharedSizeBytes, function) == CU.success
            ? Int(value) : 0
        registers =
            driver.cuFuncGetAttribute(&value, CU.functionAttributeNumRegs, function) == CU.success ? Int(value) : 0
        let sizes = Self.parameterSizes(of: function, driver: driver)
        parameterSizes = sizes
        parameterCount = sizes?.count ?? Self.parameterCount(of: function, driver: driver)
        self.backend = backend
        self.module = CUHandle(module)
        self.function = CUHandle(function)
        entryPoint = source.entryPoint
        label = "kernel '\(source.entryPoint)'"
    }

    deinit {
        let module = module
        let driver = backend.driver
        backend.releaseLater { _ = driver.cuModuleUnload(module.pointer) }
    }

    /// `cuFuncGetParamCount` (CUDA 13.2+), else nil (the sizes, when known, give the count).
    private static func parameterCount(of function: OpaquePointer?, driver: CUDADriver) -> Int? {
        guard let getCount = driver.cuFuncGetParamCount else { return nil }
        var count = 0
        return getCount(function, &count) == CU.success ? count : nil
    }

    /// Each parameter's size from `cuFuncGetParamInfo` (CUDA 12.4+): the count from `cuFuncGetParamCount` where the
    /// driver has it, else the indices it accepts (it answers `CUDA_ERROR_INVALID_VALUE` past the last); nil when
    /// the driver cannot say.
    private static func parameterSizes(of function: OpaquePointer?, driver: CUDADriver) -> [Int]? {
        guard let getInfo = driver.cuFuncGetParamInfo else { return nil }
        let known = parameterCount(of: function, driver: driver)
        var sizes: [Int] = []
        var offset = 0
        var size = 0
        // Kernel parameters take at most 32 764 bytes, so there are fewer than 32 768 of them.
        for index in 0..<(known ?? 32_768) {
            let status = getInfo(function, index, &offset, &size)
            if status == CU.errorInvalidValue, known == nil { return sizes }
            if status != CU.success { return nil }
            sizes.append(size)
        }
        return known == nil ? nil : sizes
    }

    private static func loadHint(_ status: CU.Result, binary: KernelBinary, backend: CUDABackend, name: String)
        -> String
    {
        switch status {
        case CU.errorUnsupportedPTXVersion:
            return
                "the PTX of '\(name)' comes from \(backend.compilerVersion), newer than this CUDA \(backend.driver.versionString) driver; compile to a cubin (the default) or use the NVRTC that matches the driver"
        case CU.errorNoBinaryForGPU, CU.errorInvalidImage:
            return "the \(binary.format) of '\(name)' was not built for this \(backend.info.architecture) device"
        case CU.errorInvalidPTX:
            return "the driver's PTX compiler rejected the PTX of '\(name)'"
        default:
            return "loading '\(name)' (\(binary.format), \(binary.bytes.count) bytes)"
        }
    }

    func enqueue(_ launch: Launch, arguments: [ResolvedArgument]) throws(GPUBridgeError) -> Completion {
        let driver = backend.driver
        let shared = launch.sharedMemoryBytes
        let runtime = try backend.runtime()
        if let optIn = try CUDASharedMemory.optIn(
            kernel: entryPoint, staticBytes: staticSharedBytes, dynamicBytes: shared,
            optInLimit: backend.properties.sharedMemoryLimit)
        {
            try self.optIn(dynamicShared: optIn)
        }
        let packing = CUDAArgumentPacking(arguments)
        if let parameterSizes {
            try packing.check(against: parameterSizes, kernel: entryPoint)
        }
        let releaser = runtime.releaser
        let grid = (
            UInt32(clamping: launch.groups.x), UInt32(clamping: launch.groups.y), UInt32(clamping: launch.groups.z)
        )
        let block = (
            UInt32(clamping: launch.groupSize.x), UInt32(clamping: launch.groupSize.y),
            UInt32(clamping: launch.groupSize.z)
        )
        let function = function
        let entryPoint = entryPoint
        let health = backend.health
        let completion = try runtime.nextLane().submit(label, retaining: [self]) { command throws(GPUBridgeError) in
            try packing.withParameterPointers { parameters throws(GPUBridgeError) in
                let status = releaser.retryingOutOfMemory {
                    driver.cuLaunchKernel(
                        function.pointer, grid.0, grid.1, grid.2, block.0, block.1, block.2,
                        UInt32(clamping: shared), command.stream, parameters, nil)
                }
                guard status == CU.success else {
                    throw health.failure(
                        status, "cuLaunchKernel", "kernel '\(entryPoint)', \(launch), \(arguments.count) arguments")
                }
            }
        }
        backend.counters.recordLaunch()
        return completion
    }

    /// Raises the function's dynamic shared memory limit to `bytes` (`CUDASharedMemory` checked static + dynamic
    /// against the device's opt-in limit).
    private func optIn(dynamicShared bytes: Int) throws(GPUBridgeError) {
        let driver = backend.driver
        let health = backend.health
        let function = function
        let staticShared = staticSharedBytes
        let limit = backend.properties.sharedMemoryLimit
        let entryPoint = entryPoint
        try dynamicSharedLimit.withLock { (current: inout Int) throws(GPUBridgeError) in
            guard bytes > current else { return }
            let status = driver.cuFuncSetAttribute(
                function.pointer, CU.functionAttributeMaxDynamicSharedSizeBytes, Int32(clamping: bytes))
            guard status == CU.success else {
                throw health.failure(
                    status, "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, \(bytes))",
                    "kernel '\(entryPoint)' declares \(staticShared) bytes of static shared memory; static + dynamic must stay within \(limit) bytes"
                )
            }
            current = bytes
        }
    }
}
