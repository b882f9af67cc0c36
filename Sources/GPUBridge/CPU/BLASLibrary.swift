import Glibc

/// A CBLAS library found at run time, which the CPU backend's `matmul` calls instead of its own tiled loop.
///
/// Search order: the `GPUBRIDGE_BLAS` environment variable (a library path, or `off` to use no BLAS), then
/// `libopenblas.so.0`, `libopenblas.so` and `libblas.so.3` (Debian's BLAS alternative: OpenBLAS, or the reference
/// BLAS). The library must export `cblas_sgemm` with 32-bit integers (the LP64 interface every one of these names
/// has); `openblas_get_config` and `openblas_get_num_threads` are used when present.
///
/// Threads: OpenBLAS keeps the thread count it starts with (the cores, or `OPENBLAS_NUM_THREADS`), as numpy leaves
/// it. When that is more than one, `matmul` is declared `SwiftKernel.Scheduling.threaded`: each launch is one
/// `cblas_sgemm` over the whole product, threaded by OpenBLAS, and the CPU backend runs one launch at a time, so
/// the two never split the cores between them. With one thread per call (reference BLAS, or OpenBLAS held to one
/// thread), `matmul` is `perCore`: the CPU backend runs one call per core on row bands (`CPUMatmul.scheduling`).
///
/// Ownership: `shared` is loaded once per process and never unloaded. Thread safety: immutable; `sgemm` may be
/// called from any number of threads at once. Cost: discovery is a few `dlopen`s, on first use of `shared`.
struct BLASLibrary: Sendable {
    /// `cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)`.
    typealias SGEMM =
        @convention(c) (
            Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32,
            Float, UnsafeMutablePointer<Float>?, Int32
        ) -> Void
    private typealias GetConfig = @convention(c) () -> UnsafePointer<CChar>?
    private typealias GetThreads = @convention(c) () -> Int32

    /// `CBLAS_ORDER.CblasRowMajor`.
    static let rowMajor: Int32 = 101
    /// `CBLAS_TRANSPOSE.CblasNoTrans`.
    static let noTranspose: Int32 = 111
    /// The library names tried after `GPUBRIDGE_BLAS`, in order.
    static let defaultNames = ["libopenblas.so.0", "libopenblas.so", "libblas.so.3"]

    /// The library the CPU backend uses, or why there is none; found on first use.
    static let shared: Result<BLASLibrary, BLASUnavailable> = discover(
        setting: FileStore.environment("GPUBRIDGE_BLAS")
    )

    /// The name `dlopen` was given.
    let name: String
    /// The file the loader mapped (`name` when it cannot be told).
    let path: String
    /// `openblas_get_config()`'s text; nil when the library is not OpenBLAS.
    let openBLASConfig: String?
    /// `openblas_get_num_threads()`; nil when the library is not OpenBLAS.
    let threadsPerCall: Int?
    /// The addresses of the C functions, as integers so the type is `Sendable` (immutable code addresses).
    private let sgemmAddress: UInt

    /// `cblas_sgemm`.
    var sgemm: SGEMM {
        unsafeBitCast(sgemmAddress, to: SGEMM.self)
    }

    /// Applies `GPUBRIDGE_BLAS` (`setting`) to the search: `off` finds nothing; a path is tried before the defaults.
    static func discover(setting: String?) -> Result<BLASLibrary, BLASUnavailable> {
        if setting?.lowercased() == "off" {
            return .failure(BLASUnavailable(attempts: [.init(candidate: "GPUBRIDGE_BLAS", reason: "set to off")]))
        }
        return load(candidates: (setting.map { [$0] } ?? []) + defaultNames)
    }

    /// The first of `candidates` (names or paths) that opens and exports `cblas_sgemm`, or every failure.
    static func load(candidates: [String]) -> Result<BLASLibrary, BLASUnavailable> {
        var attempts: [BLASUnavailable.Attempt] = []
        for candidate in candidates {
            switch LoadedLibrary.open(candidate) {
            case let .failure(error):
                attempts.append(.init(candidate: candidate, reason: error.message))
            case let .success(library):
                guard let sgemm = library.address("cblas_sgemm") else {
                    let path = library.path(containing: "sgemm_") ?? candidate
                    attempts.append(.init(candidate: candidate, reason: "\(path) does not export cblas_sgemm"))
                    continue
                }
                var config: String?
                if let address = library.address("openblas_get_config"),
                    let text = unsafeBitCast(address, to: GetConfig.self)()
                {
                    config = String(cString: text)
                }
                let getThreads = library.address("openblas_get_num_threads").map { UInt(bitPattern: $0) }
                return .success(
                    BLASLibrary(
                        name: candidate, path: library.path(containing: "cblas_sgemm") ?? candidate,
                        openBLASConfig: config,
                        threadsPerCall: getThreads.map { Int(unsafeBitCast($0, to: GetThreads.self)()) },
                        sgemmAddress: UInt(bitPattern: sgemm)))
            }
        }
        return .failure(BLASUnavailable(attempts: attempts))
    }

    /// One line for `gpubridge devices`: what the library is and where it was found.
    var summary: String {
        let what: String
        if let openBLASConfig {
            what = openBLASConfig.hasPrefix("OpenBLAS") ? openBLASConfig : "OpenBLAS \(openBLASConfig)"
        } else {
            what = "CBLAS (not OpenBLAS: no openblas_get_config)"
        }
        let threads = threadsPerCall.map { ", \($0) thread\($0 == 1 ? "" : "s") per call" } ?? ""
        // The loader's path is often a link chosen by the distribution (Debian's alternatives); name the file too.
        let file = LibrarySearch.resolved(path)
        let location = file == path ? path : "\(path) (\(file))"
        return "\(what) at \(location)\(threads)"
    }
}

/// Why no CBLAS was found: every candidate tried, in order, and why it was refused.
typealias BLASUnavailable = LibraryNotFound
