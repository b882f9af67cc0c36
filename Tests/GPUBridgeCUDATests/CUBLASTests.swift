import GPUBridge
import GPUBridgeCUDA
import GPUBridgeTestSupport
import Glibc
import Testing

/// The `nvidia-cublas` wheel's version as pip recorded it (`13.10.0.20`), asked of python3 itself so the test does
/// not trust the library search it checks; nil when python3 or the wheel is missing.
private let wheelVersion: String? = {
    guard
        let pipe = popen(
            "python3 -c \"import importlib.metadata as m; print(m.version('nvidia-cublas'))\" 2>/dev/null", "r")
    else { return nil }
    var output = ""
    var buffer = [CChar](repeating: 0, count: 256)
    while fgets(&buffer, Int32(buffer.count), pipe) != nil {
        output += String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    guard pclose(pipe) == 0 else { return nil }
    return output.split(separator: "\n").first.map(String.init)
}()

private let cublasSwitchedOff = getenv("GPUBRIDGE_CUBLAS").map { String(cString: $0) } == "off"
private let cublas: CUBLASLibrary? = try? CUBLASLibrary.shared.get()

@Suite("cuBLAS for the CUDA backend's matmul")
struct CUBLASTests {
    @Test(
        "cuBLAS from the nvidia-cublas wheel is found without a GPU and its version is read",
        .enabled(if: wheelVersion != nil && !cublasSwitchedOff, "the nvidia-cublas wheel is not installed"))
    func foundInTheWheel() throws {
        let wheel = try #require(wheelVersion)
        let library = try CUBLASLibrary.shared.get()
        // cublasGetProperty gives major.minor.patch; the wheel adds a build number.
        #expect(wheel.hasPrefix(library.version + "."), "wheel \(wheel), cuBLAS \(library.version)")
        #expect(library.file.hasPrefix("/") && library.file.contains("/nvidia/"), "\(library.file)")
        let line = try #require(CUDABackendProvider().discover().details.first { $0.0 == "blas" }?.1)
        #expect(line == "cuBLAS \(library.version) at \(library.file); matmul calls cublasSgemm_v2", "\(line)")
    }

    @Test("discovery names each place tried and why it failed, and off finds nothing")
    func discoveryFailures() {
        guard case let .failure(off) = CUBLASLibrary.discover(setting: "off") else {
            Issue.record("GPUBRIDGE_CUBLAS=off found a library")
            return
        }
        #expect(off.attempts == [.init(candidate: "GPUBRIDGE_CUBLAS", reason: "set to off")])
        let missing = "/nonexistent/libcublas.so.13"
        switch CUBLASLibrary.discover(setting: missing) {
        case let .failure(reason):
            #expect(reason.attempts.first?.candidate == missing)
            #expect(reason.attempts.first?.reason.contains("No such file") == true, "\(reason)")
            #expect(reason.attempts.contains { $0.candidate == "libcublas.so.13" }, "the loader's own search is tried")
        case let .success(library):
            // Found after the missing path: only where cuBLAS is installed.
            #expect(library.file.contains("libcublas"))
            #expect(cublas != nil)
        }
    }

    @Test(
        "matmul runs cublasSgemm_v2 and matches the host product",
        .enabled(if: CUDATestSupport.hasDevice, "needs a CUDA device and NVRTC"),
        .enabled(if: cublas != nil, "cuBLAS not found"),
        arguments: [[1, 1, 1], [17, 33, 5], [100, 1, 100], [128, 128, 128], [257, 129, 65]])
    func throughCUBLAS(_ shape: [Int]) async throws {
        let (m, n, k) = (shape[0], shape[1], shape[2])
        let device = try CUDATestSupport.device()
        let kernel = try device.compile(KernelCatalog().definition("matmul").source(for: .cuda))
        let program = try #require(kernel.program as? CUDALibraryGEMM)
        #expect(try await MatmulCheck.mismatches(kernel, on: device, m: m, n: n, k: k) == 0)
        #expect(program.libraryRefusal == nil, "\(program.libraryRefusal ?? "")")
        #expect(program.libraryLaunches == 1)
    }
}
