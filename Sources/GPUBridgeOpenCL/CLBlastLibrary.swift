import GPUBridge
import Glibc

/// CLBlast (a tuned OpenCL BLAS), found at run time: the OpenCL backend runs its `CLBlastSgemm` in place of the
/// built-in `matmul` kernel (`LibraryRoutine.sgemm`).
///
/// Search order: `GPUBRIDGE_CLBLAST` (a library path, or `off` for none), then `libclblast.so.1` (Debian's
/// `libclblast1`) and `libclblast.so`. Without it the hand-written tiled kernel runs, and `gpubridge devices` says so.
///
/// CLBlast compiles its kernels for a device on the first call there (kept for the life of the process; PoCL also
/// keeps the binaries in its own cache), so a device's first matmul costs that compilation.
///
/// Ownership: `shared` is loaded once per process and never unloaded. Thread safety: immutable; CLBlast guards its
/// caches itself, and the backend makes its calls under the launch tracker's lock. Cost: discovery is a few `dlopen`s.
public struct CLBlastLibrary: Sendable {
    /// `CLBlastSgemm(layout, transA, transB, m, n, k, alpha, a, aOffset, aLd, b, bOffset, bLd, beta, c, cOffset, cLd,
    /// queue*, event*)`: sizes and offsets in elements.
    typealias SGEMM =
        @convention(c) (
            Int32, Int32, Int32, Int, Int, Int, Float, OpaquePointer?, Int, Int, OpaquePointer?, Int, Int, Float,
            OpaquePointer?, Int, Int, UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<OpaquePointer?>?
        ) -> Int32

    /// `CLBlastLayoutRowMajor`.
    static let rowMajor: Int32 = 101
    /// `CLBlastTransposeNo`.
    static let noTranspose: Int32 = 111
    /// The library names tried after `GPUBRIDGE_CLBLAST`, in order.
    public static let defaultNames = ["libclblast.so.1", "libclblast.so"]

    /// The library the OpenCL backend uses, or every place tried; found on first use.
    public static let shared: Result<CLBlastLibrary, LibraryNotFound> = discover(
        setting: getenv("GPUBRIDGE_CLBLAST").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 })

    /// The name `dlopen` was given.
    public let name: String
    /// The file behind it, links resolved (its name carries the version on Debian: `libclblast.so.1.5.3`).
    public let file: String
    /// `CLBlastSgemm`'s address, as an integer so the type is `Sendable` (an immutable code address).
    private let sgemmAddress: UInt

    var sgemm: SGEMM { unsafeBitCast(sgemmAddress, to: SGEMM.self) }

    /// Applies `GPUBRIDGE_CLBLAST` (`setting`) to the search.
    public static func discover(setting: String?) -> Result<CLBlastLibrary, LibraryNotFound> {
        LibrarySearch.find(
            variable: "GPUBRIDGE_CLBLAST", setting: setting, defaults: defaultNames, exporting: "CLBlastSgemm"
        )
        .map { found in
            CLBlastLibrary(
                name: found.candidate, file: found.file,
                sgemmAddress: UInt(bitPattern: found.library.address("CLBlastSgemm")))
        }
    }

    /// One line for `gpubridge devices`.
    public var summary: String { "CLBlast at \(name == file ? file : "\(name) (\(file))"); matmul calls CLBlastSgemm" }

    /// The `blas` line of the OpenCL report: the library in use, or every place tried and the fallback.
    static func summary(_ result: Result<CLBlastLibrary, LibraryNotFound>) -> String {
        switch result {
        case let .success(library): library.summary
        case let .failure(reason): "CLBlast not found (\(reason)); matmul uses the built-in kernel"
        }
    }

    /// A CLBlast status as text: OpenCL's names for the codes it shares with OpenCL, CLBlast's own otherwise.
    static func statusName(_ status: Int32) -> String {
        switch status {
        case -1024: "CLBlastNotImplemented"
        case -1017: "CLBlastInvalidDimension"
        case -1011: "CLBlastInsufficientMemoryA"
        case -1010: "CLBlastInsufficientMemoryB"
        case -1009: "CLBlastInsufficientMemoryC"
        case -2046: "CLBlastInvalidLocalMemUsage"
        case -2041: "CLBlastDatabaseError"
        case -2040: "CLBlastUnknownError"
        case -2039: "CLBlastUnexpectedError"
        case ...(-1000): "CLBlast status \(status)"
        default: openCLStatusName(status)
        }
    }
}
