import GPUBridge

/// cuBLAS, found at run time: the CUDA backend runs its `cublasSgemm_v2` in place of the built-in `matmul` kernel
/// (`LibraryRoutine.sgemm`).
///
/// Where it is looked for, in order: `GPUBRIDGE_CUBLAS` (a file path, or `off` for none); `$CUDA_HOME/lib64`,
/// `$CUDA_PATH/lib64`, `/usr/local/cuda/lib64`; the NVIDIA Python wheels (`nvidia-cublas` puts it in
/// `nvidia/cu13/lib`, `nvidia-cublas-cu12` in `nvidia/cublas/lib`) in the site-packages folders NVRTC is looked for
/// in; then the dynamic loader's own search (`libcublas.so.13`, `libcublas.so.12`, `libcublas.so`). The library finds
/// its `libcublasLt` next to itself. Without it the hand-written tiled kernel runs, and `gpubridge devices` says so.
///
/// Loading cuBLAS needs no GPU (its version is read with `cublasGetProperty`); making a handle does. Ownership:
/// `shared` is loaded once per process and never unloaded. Thread safety: immutable; handles are the caller's to
/// serialise (`CUDALibraryGEMM` keeps one per stream). Cost: discovery is a few `dlopen`s and a folder search.
public struct CUBLASLibrary: Sendable {
    typealias Create = @convention(c) (UnsafeMutablePointer<OpaquePointer?>?) -> Int32
    typealias Destroy = @convention(c) (OpaquePointer?) -> Int32
    typealias SetStream = @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32
    /// `cublasSgemm_v2(handle, transA, transB, m, n, k, alpha*, A, lda, B, ldb, beta*, C, ldc)`, column-major, device
    /// pointers as integers.
    typealias SGEMM =
        @convention(c) (
            OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafePointer<Float>?, UInt64, Int32, UInt64, Int32,
            UnsafePointer<Float>?, UInt64, Int32
        ) -> Int32
    typealias GetProperty = @convention(c) (Int32, UnsafeMutablePointer<Int32>?) -> Int32

    /// `CUBLAS_OP_N`.
    static let noTranspose: Int32 = 0

    /// The library names the dynamic loader is asked for last.
    static let loaderNames = ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]
    /// Where the NVIDIA wheels put it, under site-packages.
    static let wheelFolders = ["nvidia/cu13/lib", "nvidia/cublas/lib", "nvidia/cu12/lib"]

    /// The library the CUDA backend uses, or every place tried; found on first use.
    public static let shared: Result<CUBLASLibrary, LibraryNotFound> = discover(
        setting: FileSearch.environment("GPUBRIDGE_CUBLAS"))

    /// The file loaded, links resolved.
    public let file: String
    /// `major.minor.patch` from `cublasGetProperty`.
    public let version: String
    private let addresses: [UInt]

    var create: Create { unsafeBitCast(addresses[0], to: Create.self) }
    var destroy: Destroy { unsafeBitCast(addresses[1], to: Destroy.self) }
    var setStream: SetStream { unsafeBitCast(addresses[2], to: SetStream.self) }
    var sgemm: SGEMM { unsafeBitCast(addresses[3], to: SGEMM.self) }

    static let symbols = ["cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSgemm_v2"]

    /// Applies `GPUBRIDGE_CUBLAS` (`setting`: a path, or `off`) to the search.
    public static func discover(setting: String?) -> Result<CUBLASLibrary, LibraryNotFound> {
        let found = LibrarySearch.find(
            variable: "GPUBRIDGE_CUBLAS", setting: setting, defaults: candidates(), exporting: "cublasSgemm_v2")
        return found.flatMap { found -> Result<CUBLASLibrary, LibraryNotFound> in
            var addresses: [UInt] = []
            for symbol in symbols {
                guard let address = found.library.address(symbol) else {
                    return .failure(
                        LibraryNotFound(attempts: [.init(candidate: found.file, reason: "does not export \(symbol)")]))
                }
                addresses.append(UInt(bitPattern: address))
            }
            var version: [Int32] = []
            if let address = found.library.address("cublasGetProperty") {
                let getProperty = unsafeBitCast(address, to: GetProperty.self)
                for property: Int32 in 0...2 {  // MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
                    var value: Int32 = 0
                    if getProperty(property, &value) == 0 { version.append(value) }
                }
            }
            return .success(
                CUBLASLibrary(
                    file: found.file,
                    version: version.count == 3 ? version.map(String.init).joined(separator: ".") : "unknown version",
                    addresses: addresses))
        }
    }

    /// Library files in the toolkit and wheel folders, then the loader's names.
    static func candidates() -> [String] {
        var folders: [String] = []
        for variable in ["CUDA_HOME", "CUDA_PATH"] {
            if let root = FileSearch.environment(variable) { folders.append(root + "/lib64") }
        }
        folders.append("/usr/local/cuda/lib64")
        for site in NVRTCLocator.sitePackages() {
            folders += wheelFolders.map { site + "/" + $0 }
        }
        var files: [String] = []
        for folder in folders {
            files += loaderNames.map { folder + "/" + $0 }.filter(FileSearch.exists)
        }
        return files + loaderNames
    }

    /// One line for `gpubridge devices`.
    public var summary: String { "cuBLAS \(version) at \(file); matmul calls cublasSgemm_v2" }

    /// The `blas` line of the CUDA report: the library in use, or every place tried and the fallback.
    static func summary(_ result: Result<CUBLASLibrary, LibraryNotFound>) -> String {
        switch result {
        case let .success(library): library.summary
        case let .failure(reason): "cuBLAS not found (\(reason)); matmul uses the built-in kernel"
        }
    }

    /// A `cublasStatus_t` as its name.
    static func statusName(_ status: Int32) -> String {
        switch status {
        case 0: "CUBLAS_STATUS_SUCCESS"
        case 1: "CUBLAS_STATUS_NOT_INITIALIZED"
        case 3: "CUBLAS_STATUS_ALLOC_FAILED"
        case 7: "CUBLAS_STATUS_INVALID_VALUE"
        case 8: "CUBLAS_STATUS_ARCH_MISMATCH"
        case 11: "CUBLAS_STATUS_MAPPING_ERROR"
        case 13: "CUBLAS_STATUS_EXECUTION_FAILED"
        case 14: "CUBLAS_STATUS_INTERNAL_ERROR"
        case 15: "CUBLAS_STATUS_NOT_SUPPORTED"
        case 16: "CUBLAS_STATUS_LICENSE_ERROR"
        default: "cuBLAS status \(status)"
        }
    }
}
