import GPUBridge

/// Why the CUDA driver could not be used: the library is missing, a required symbol is missing, or `cuInit` failed.
public enum CUDADriverUnavailable: Error, Sendable, Equatable, CustomStringConvertible {
    /// `dlopen` failed; `message` is `dlerror()`'s text.
    case libraryMissing(library: String, message: String)
    /// The library loaded but does not export a function this backend needs.
    case symbolMissing(library: String, symbol: String)
    /// `cuInit(0)` failed with this status (`CUDA_ERROR_NO_DEVICE`, `CUDA_ERROR_INSUFFICIENT_DRIVER`...).
    case initFailed(code: Int, name: String, message: String)

    public var description: String {
        switch self {
        case let .libraryMissing(library, message):
            return "\(library) could not be loaded (no NVIDIA driver installed?): \(message)"
        case let .symbolMissing(library, symbol):
            return "\(library) does not export \(symbol) (driver too old?)"
        case let .initFailed(code, name, message):
            return "cuInit failed with \(name) (\(code)): \(message)"
        }
    }
}

/// The CUDA driver API, loaded at run time from `libcuda.so.1`.
///
/// Symbols are resolved with `cuGetProcAddress` (itself found by `dlsym` as `cuGetProcAddress_v2`, else the CUDA 11
/// `cuGetProcAddress`) for the CUDA version this backend is written against (`apiVersion`, or the driver's own
/// version when that is older), so every function has the ABI its declaration here assumes (`cuMemAlloc` gives
/// `cuMemAlloc_v2`, and so on). Where `cuGetProcAddress` is missing or finds nothing, the versioned name is looked up
/// with `dlsym` (`cuMemAlloc_v2`, `cuMemFree_v2`, `cuStreamDestroy_v2`...). Legacy-default-stream variants are asked
/// for; this backend never uses the NULL stream anyway.
///
/// Ownership: one per loaded library; backends and programs share it. Thread safety: immutable; the driver API is
/// thread-safe. Cost: loading resolves about forty symbols once.
final class CUDADriver: Sendable {
    /// The CUDA version the declarations in `CU` match (12.0).
    static let apiVersion: Int32 = 12000

    let library: DynamicLibrary
    /// `cuDriverGetVersion`: 1000 * major + 10 * minor.
    let driverVersion: Int32
    /// How symbols were resolved (for `gpubridge devices`).
    let resolution: String

    let cuGetErrorName: CU.GetErrorString
    let cuGetErrorString: CU.GetErrorString
    let cuDeviceGetCount: CU.DeviceGetCount
    let cuDeviceGet: CU.DeviceGet
    let cuDeviceGetName: CU.DeviceGetName
    let cuDeviceGetAttribute: CU.DeviceGetAttribute
    let cuDeviceTotalMem: CU.DeviceTotalMem
    let cuDeviceGetPCIBusId: CU.DeviceGetPCIBusId
    let cuDevicePrimaryCtxRetain: CU.DevicePrimaryCtxRetain
    let cuDevicePrimaryCtxRelease: CU.DevicePrimaryCtxRelease
    let cuCtxSetCurrent: CU.CtxSetCurrent
    let cuMemGetInfo: CU.MemGetInfo
    let cuMemAlloc: CU.MemAlloc
    let cuMemFree: CU.MemFree
    let cuMemcpyHtoDAsync: CU.MemcpyHtoDAsync
    let cuMemcpyDtoHAsync: CU.MemcpyDtoHAsync
    let cuMemcpyDtoDAsync: CU.MemcpyDtoDAsync
    let cuMemsetD8Async: CU.MemsetD8Async
    let cuMemsetD16Async: CU.MemsetD16Async
    let cuMemsetD32Async: CU.MemsetD32Async
    let cuMemsetD2D8Async: CU.MemsetD2D8Async
    let cuMemsetD2D32Async: CU.MemsetD2D32Async
    let cuMemHostAlloc: CU.MemHostAlloc
    let cuMemFreeHost: CU.MemFreeHost
    let cuMemHostRegister: CU.MemHostRegister
    let cuMemHostUnregister: CU.MemHostUnregister
    let cuStreamCreate: CU.StreamCreate
    let cuStreamDestroy: CU.StreamDestroy
    let cuEventCreate: CU.EventCreate
    let cuEventRecord: CU.EventRecord
    let cuEventSynchronize: CU.EventSynchronize
    let cuEventElapsedTime: CU.EventElapsedTime
    let cuEventDestroy: CU.EventDestroy
    let cuModuleLoadData: CU.ModuleLoadData
    let cuModuleUnload: CU.ModuleUnload
    let cuModuleGetFunction: CU.ModuleGetFunction
    let cuFuncSetAttribute: CU.FuncSetAttribute
    let cuFuncGetAttribute: CU.FuncGetAttribute
    let cuLaunchKernel: CU.LaunchKernel
    /// CUDA 12.4+; nil on older drivers.
    let cuFuncGetParamInfo: CU.FuncGetParamInfo?
    /// CUDA 13.2+; nil on older drivers.
    let cuFuncGetParamCount: CU.FuncGetParamCount?

    /// Loads `path` (default `libcuda.so.1`), calls `cuInit(0)` and resolves every function.
    static func load(path: String = "libcuda.so.1") -> Result<CUDADriver, CUDADriverUnavailable> {
        let library: DynamicLibrary
        switch DynamicLibrary.open(path) {
        case let .success(opened): library = opened
        case let .failure(error): return .failure(.libraryMissing(library: path, message: error.message))
        }
        do {
            return .success(try CUDADriver(library: library))
        } catch {
            return .failure(error)
        }
    }

    private init(library: DynamicLibrary) throws(CUDADriverUnavailable) {
        self.library = library
        let name = library.name
        // Functions that were never versioned are looked up directly.
        func direct<T>(_ symbol: String, _ type: T.Type) throws(CUDADriverUnavailable) -> T {
            guard let function = library.function(symbol, as: type) else {
                throw .symbolMissing(library: name, symbol: symbol)
            }
            return function
        }
        let errorName = try direct("cuGetErrorName", CU.GetErrorString.self)
        let errorString = try direct("cuGetErrorString", CU.GetErrorString.self)
        cuGetErrorName = errorName
        cuGetErrorString = errorString
        let cuInit = try direct("cuInit", CU.Init.self)
        let status = cuInit(0)
        guard status == CU.success else {
            let (errorNameText, message) = CUDADriver.describe(status, name: errorName, string: errorString)
            throw .initFailed(code: Int(status), name: errorNameText, message: message)
        }
        let getVersion = try direct("cuDriverGetVersion", CU.DriverGetVersion.self)
        var version: Int32 = 0
        guard getVersion(&version) == CU.success else {
            throw .symbolMissing(library: name, symbol: "cuDriverGetVersion (returned an error)")
        }
        driverVersion = version

        let resolver = SymbolResolver(library: library, driverVersion: version)
        resolution = resolver.description
        func required<T>(_ base: String, _ versioned: String, _ type: T.Type) throws(CUDADriverUnavailable) -> T {
            guard let function = resolver.resolve(base, versioned: versioned, since: 0, as: type) else {
                throw .symbolMissing(library: name, symbol: versioned)
            }
            return function
        }
        cuDeviceGetCount = try required("cuDeviceGetCount", "cuDeviceGetCount", CU.DeviceGetCount.self)
        cuDeviceGet = try required("cuDeviceGet", "cuDeviceGet", CU.DeviceGet.self)
        cuDeviceGetName = try required("cuDeviceGetName", "cuDeviceGetName", CU.DeviceGetName.self)
        cuDeviceGetAttribute = try required("cuDeviceGetAttribute", "cuDeviceGetAttribute", CU.DeviceGetAttribute.self)
        cuDeviceTotalMem = try required("cuDeviceTotalMem", "cuDeviceTotalMem_v2", CU.DeviceTotalMem.self)
        cuDeviceGetPCIBusId = try required("cuDeviceGetPCIBusId", "cuDeviceGetPCIBusId", CU.DeviceGetPCIBusId.self)
        cuDevicePrimaryCtxRetain = try required(
            "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRetain", CU.DevicePrimaryCtxRetain.self)
        cuDevicePrimaryCtxRelease = try required(
            "cuDevicePrimaryCtxRelease", "cuDevicePrimaryCtxRelease_v2", CU.DevicePrimaryCtxRelease.self)
        cuCtxSetCurrent = try required("cuCtxSetCurrent", "cuCtxSetCurrent", CU.CtxSetCurrent.self)
        cuMemGetInfo = try required("cuMemGetInfo", "cuMemGetInfo_v2", CU.MemGetInfo.self)
        cuMemAlloc = try required("cuMemAlloc", "cuMemAlloc_v2", CU.MemAlloc.self)
        cuMemFree = try required("cuMemFree", "cuMemFree_v2", CU.MemFree.self)
        cuMemcpyHtoDAsync = try required("cuMemcpyHtoDAsync", "cuMemcpyHtoDAsync_v2", CU.MemcpyHtoDAsync.self)
        cuMemcpyDtoHAsync = try required("cuMemcpyDtoHAsync", "cuMemcpyDtoHAsync_v2", CU.MemcpyDtoHAsync.self)
        cuMemcpyDtoDAsync = try required("cuMemcpyDtoDAsync", "cuMemcpyDtoDAsync_v2", CU.MemcpyDtoDAsync.self)
        cuMemsetD8Async = try required("cuMemsetD8Async", "cuMemsetD8Async", CU.MemsetD8Async.self)
        cuMemsetD16Async = try required("cuMemsetD16Async", "cuMemsetD16Async", CU.MemsetD16Async.self)
        cuMemsetD32Async = try required("cuMemsetD32Async", "cuMemsetD32Async", CU.MemsetD32Async.self)
        cuMemsetD2D8Async = try required("cuMemsetD2D8Async", "cuMemsetD2D8Async", CU.MemsetD2D8Async.self)
        cuMemsetD2D32Async = try required("cuMemsetD2D32Async", "cuMemsetD2D32Async", CU.MemsetD2D32Async.self)
        cuMemHostAlloc = try required("cuMemHostAlloc", "cuMemHostAlloc", CU.MemHostAlloc.self)
        cuMemFreeHost = try required("cuMemFreeHost", "cuMemFreeHost", CU.MemFreeHost.self)
        cuMemHostRegister = try required("cuMemHostRegister", "cuMemHostRegister_v2", CU.MemHostRegister.self)
        cuMemHostUnregister = try required("cuMemHostUnregister", "cuMemHostUnregister", CU.MemHostUnregister.self)
        cuStreamCreate = try required("cuStreamCreate", "cuStreamCreate", CU.StreamCreate.self)
        cuStreamDestroy = try required("cuStreamDestroy", "cuStreamDestroy_v2", CU.StreamDestroy.self)
        cuEventCreate = try required("cuEventCreate", "cuEventCreate", CU.EventCreate.self)
        cuEventRecord = try required("cuEventRecord", "cuEventRecord", CU.EventRecord.self)
        cuEventSynchronize = try required("cuEventSynchronize", "cuEventSynchronize", CU.EventSynchronize.self)
        cuEventElapsedTime = try required("cuEventElapsedTime", "cuEventElapsedTime", CU.EventElapsedTime.self)
        cuEventDestroy = try required("cuEventDestroy", "cuEventDestroy_v2", CU.EventDestroy.self)
        cuModuleLoadData = try required("cuModuleLoadData", "cuModuleLoadData", CU.ModuleLoadData.self)
        cuModuleUnload = try required("cuModuleUnload", "cuModuleUnload", CU.ModuleUnload.self)
        cuModuleGetFunction = try required("cuModuleGetFunction", "cuModuleGetFunction", CU.ModuleGetFunction.self)
        cuFuncSetAttribute = try required("cuFuncSetAttribute", "cuFuncSetAttribute", CU.FuncSetAttribute.self)
        cuFuncGetAttribute = try required("cuFuncGetAttribute", "cuFuncGetAttribute", CU.FuncGetAttribute.self)
        cuLaunchKernel = try required("cuLaunchKernel", "cuLaunchKernel", CU.LaunchKernel.self)
        // Optional: introduced after the version this backend is written against.
        cuFuncGetParamInfo = resolver.resolve(
            "cuFuncGetParamInfo", versioned: "cuFuncGetParamInfo", since: 12040, as: CU.FuncGetParamInfo.self)
        cuFuncGetParamCount = resolver.resolve(
            "cuFuncGetParamCount", versioned: "cuFuncGetParamCount", since: 13020, as: CU.FuncGetParamCount.self)
    }

    /// The driver's version as `major.minor`.
    var versionString: String { Self.versionString(driverVersion) }

    static func versionString(_ version: Int32) -> String { "\(version / 1000).\((version % 1000) / 10)" }

    /// `cuGetErrorName` and `cuGetErrorString` of `status`.
    func describe(_ status: CU.Result) -> (name: String, message: String) {
        Self.describe(status, name: cuGetErrorName, string: cuGetErrorString)
    }

    private static func describe(_ status: CU.Result, name: CU.GetErrorString, string: CU.GetErrorString) -> (
        name: String, message: String
    ) {
        var namePointer: UnsafePointer<CChar>?
        var messagePointer: UnsafePointer<CChar>?
        let errorName = name(status, &namePointer) == CU.success ? namePointer.map { String(cString: $0) } : nil
        let message = string(status, &messagePointer) == CU.success ? messagePointer.map { String(cString: $0) } : nil
        return (errorName ?? "CUresult \(status)", message ?? "unrecognised error code")
    }

    /// The error for a failed driver call: `backendFailure` naming the call, with `cuGetErrorName: cuGetErrorString`.
    func failure(_ status: CU.Result, _ call: String, _ context: String? = nil) -> GPUBridgeError {
        let (name, message) = describe(status)
        let suffix = context.map { "; \($0)" } ?? ""
        return .backendFailure(backend: "cuda", call: call, code: Int(status), message: "\(name): \(message)\(suffix)")
    }

    /// The one checked wrapper: throws `backendFailure` unless `status` is `CUDA_SUCCESS`.
    @inline(__always)
    func check(_ status: CU.Result, _ call: @autoclosure () -> String) throws(GPUBridgeError) {
        guard status == CU.success else { throw failure(status, call()) }
    }
}

/// Resolves driver functions by base name and version with `cuGetProcAddress`, falling back to `dlsym` of the
/// versioned name.
private struct SymbolResolver: CustomStringConvertible {
    let library: DynamicLibrary
    let driverVersion: Int32
    let v2: CU.GetProcAddressV2?
    let v1: CU.GetProcAddressV1?

    init(library: DynamicLibrary, driverVersion: Int32) {
        self.library = library
        self.driverVersion = driverVersion
        v2 = library.function("cuGetProcAddress_v2", as: CU.GetProcAddressV2.self)
        v1 = v2 == nil ? library.function("cuGetProcAddress", as: CU.GetProcAddressV1.self) : nil
    }

    var description: String {
        let via = v2 != nil ? "cuGetProcAddress_v2" : (v1 != nil ? "cuGetProcAddress" : "dlsym of versioned names")
        return "\(via), CUDA \(CUDADriver.versionString(min(CUDADriver.apiVersion, driverVersion))) ABI"
    }

    /// `base` with the ABI of CUDA `max(since, apiVersion)` capped at the driver's version; nil when the driver is
    /// older than `since` or has no such function.
    func resolve<T>(_ base: String, versioned: String, since: Int32, as type: T.Type) -> T? {
        guard since <= driverVersion else { return nil }
        // Asking for a version newer than the driver is CUDA_ERROR_INVALID_VALUE, so cap it.
        let version = min(max(since, CUDADriver.apiVersion), driverVersion)
        var pointer: UnsafeMutableRawPointer?
        if let v2 {
            var status: Int32 = -1
            if v2(base, &pointer, version, CU.getProcAddressLegacyStream, &status) == CU.success,
                status == CU.getProcAddressSuccess, let pointer
            {
                return unsafeBitCast(pointer, to: T.self)
            }
        } else if let v1 {
            if v1(base, &pointer, version, CU.getProcAddressLegacyStream) == CU.success, let pointer {
                return unsafeBitCast(pointer, to: T.self)
            }
        }
        return library.function(versioned, as: type)
    }
}
