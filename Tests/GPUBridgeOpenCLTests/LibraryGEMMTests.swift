import GPUBridge
import GPUBridgeOpenCL
import GPUBridgeTestSupport
import Glibc
import Testing

/// Whether the CLBlast the OpenCL backend looks for first can be loaded here (scripts/test installs libclblast1).
private let clblastInstalled: Bool = {
    guard let handle = dlopen("libclblast.so.1", RTLD_NOW | RTLD_LOCAL) else { return false }
    dlclose(handle)
    return true
}()

private let clblastSwitchedOff = getenv("GPUBRIDGE_CLBLAST").map { String(cString: $0) } == "off"

private let clblastFound: Bool = {
    if case .success = CLBlastLibrary.shared { return true }
    return false
}()

/// (M, N, K) shapes, most of them not multiples of the 16x16 tile.
private let shapes: [(m: Int, n: Int, k: Int)] = [
    (1, 1, 1), (17, 33, 5), (100, 1, 100), (128, 128, 128), (257, 129, 65),
]

@Suite(
    "OpenCL matmul through CLBlast", .enabled(if: OpenCLTestEnvironment.available, OpenCLTestEnvironment.skipReason))
struct LibraryGEMMTests {
    /// The catalog's matmul compiled on a fresh OpenCL device.
    static func matmul() throws -> (device: Device, kernel: Kernel) {
        let (device, _) = try makeOpenCLDevice()
        return (device, try device.compile(KernelCatalog().definition("matmul").source(for: .opencl)))
    }

    @Test("the OpenCL report's blas line names CLBlast when it is installed, else the built-in kernel")
    func reportLine() throws {
        let line = try #require(OpenCLTestEnvironment.report.details.first { $0.0 == "blas" }?.1)
        if clblastSwitchedOff {
            #expect(line.contains("GPUBRIDGE_CLBLAST: set to off"), "\(line)")
            #expect(line.hasSuffix("matmul uses the built-in kernel"), "\(line)")
        } else if clblastInstalled {
            let library = try CLBlastLibrary.shared.get()
            #expect(line.hasPrefix("CLBlast at libclblast.so.1 (/"), "\(line)")
            #expect(line.contains(library.file) && line.hasSuffix("matmul calls CLBlastSgemm"), "\(line)")
        } else {
            #expect(line.hasSuffix("matmul uses the built-in kernel"), "\(line)")
        }
    }

    @Test("discovery names each place tried and why it failed, and off finds nothing")
    func discoveryFailures() {
        guard case let .failure(off) = CLBlastLibrary.discover(setting: "off") else {
            Issue.record("GPUBRIDGE_CLBLAST=off found a library")
            return
        }
        #expect(off.attempts == [.init(candidate: "GPUBRIDGE_CLBLAST", reason: "set to off")])
        let missing = "/nonexistent/libclblast.so.1"
        let found = CLBlastLibrary.discover(setting: missing)
        // The missing path is tried first and refused with the loader's words, whatever is found after it.
        switch found {
        case let .failure(reason):
            #expect(reason.attempts.first?.candidate == missing)
            #expect(reason.attempts.first?.reason.contains("No such file") == true, "\(reason)")
        case let .success(library):
            #expect(clblastInstalled && library.name == "libclblast.so.1")
        }
    }

    @Test(
        "matmul runs CLBlastSgemm and matches the host product", .enabled(if: clblastFound, "CLBlast not found"),
        arguments: shapes.indices)
    func throughCLBlast(_ index: Int) async throws {
        let (m, n, k) = shapes[index]
        let (device, kernel) = try Self.matmul()
        let program = try #require(kernel.program as? OpenCLLibraryGEMM)
        #expect(try await MatmulCheck.mismatches(kernel, on: device, m: m, n: n, k: k) == 0)
        #expect(program.libraryLaunches == 1, "\(program.libraryRefusal ?? "")")
        #expect(program.libraryRefusal == nil)
    }

    @Test("views are passed to CLBlast as offsets", .enabled(if: clblastFound, "CLBlast not found"))
    func views() async throws {
        let (device, kernel) = try Self.matmul()
        let program = try #require(kernel.program as? OpenCLLibraryGEMM)
        let (m, n, k) = (20, 18, 7)
        // Each matrix sits 32 floats (128 bytes, a sub-buffer alignment PoCL accepts) into a larger buffer.
        let skip = 32
        let a = MatmulCheck.values(m * k, seed: 1), b = MatmulCheck.values(k * n, seed: 2)
        let aAll = try device.makeBuffer(copying: [Float](repeating: 9, count: skip) + a)
        let bAll = try device.makeBuffer(copying: [Float](repeating: 9, count: skip) + b)
        let cAll = try device.makeBuffer(copying: [Float](repeating: .nan, count: skip + m * n))
        try await device.launch(
            kernel, Launch(groups: Extent3(2, 2), groupSize: Extent3(16, 16)),
            arguments: [
                .buffer(try aAll.view(offset: skip, count: m * k)), .buffer(try bAll.view(offset: skip, count: k * n)),
                .buffer(try cAll.view(offset: skip, count: m * n)), .int32(Int32(m)), .int32(Int32(n)),
                .int32(Int32(k)),
            ])
        let c = try cAll.toArray()
        let want = HostReference.matmul(a, b, m: m, n: n, k: k)
        let untouched = c.prefix(skip).allSatisfy { $0.isNaN }
        #expect(untouched, "the floats before C's view were written")
        let worst = zip(c.dropFirst(skip), want).map { abs(Double($0) - $1) }.max() ?? .infinity
        #expect(worst < 1e-4)
        #expect(program.libraryLaunches == 1)
    }

    @Test(
        "a launch that does not cover C runs the compiled kernel, which writes only its tiles",
        .enabled(if: clblastFound, "CLBlast not found"))
    func partialLaunchRunsTheKernel() async throws {
        let (device, kernel) = try Self.matmul()
        let program = try #require(kernel.program as? OpenCLLibraryGEMM)
        let (m, n, k) = (32, 32, 8)
        let a = MatmulCheck.values(m * k, seed: 3), b = MatmulCheck.values(k * n, seed: 4)
        let c = try device.makeBuffer(copying: [Float](repeating: .nan, count: m * n))
        // One 16x16 tile of four: the library would compute all of C, so the kernel must run instead.
        try await device.launch(
            kernel, Launch(groups: Extent3(1, 1), groupSize: Extent3(16, 16)),
            arguments: [
                .buffer(try device.makeBuffer(copying: a)), .buffer(try device.makeBuffer(copying: b)), .buffer(c),
                .int32(Int32(m)), .int32(Int32(n)), .int32(Int32(k)),
            ])
        let got = try c.toArray()
        let want = HostReference.matmul(a, b, m: m, n: n, k: k)
        for row in 0..<m {
            for column in 0..<n {
                let value = got[row * n + column]
                if row < 16 && column < 16 {
                    #expect(abs(Double(value) - want[row * n + column]) < 1e-4, "(\(row), \(column))")
                } else {
                    #expect(value.isNaN, "(\(row), \(column)) outside the launch was written")
                }
            }
        }
        #expect(program.libraryLaunches == 0)
    }

    @Test(
        "a matrix smaller than M, N, K say is refused before CLBlast reads it",
        .enabled(if: clblastFound, "CLBlast not found"))
    func shortMatrix() async throws {
        let (device, kernel) = try Self.matmul()
        let program = try #require(kernel.program as? OpenCLLibraryGEMM)
        let (m, n, k) = (16, 16, 16)
        let short = try device.makeBuffer(copying: [Float](repeating: 1, count: m * k - 1))
        let b = try device.makeBuffer(copying: [Float](repeating: 1, count: k * n))
        let c = try device.makeBuffer(copying: [Float](repeating: .nan, count: m * n))
        let error = await bridgeError {
            try await device.launch(
                kernel, Launch(groups: Extent3(1, 1), groupSize: Extent3(16, 16)),
                arguments: [.buffer(short), .buffer(b), .buffer(c), .int32(16), .int32(16), .int32(16)])
        }
        guard case let .argumentMismatch(name, detail) = error else {
            Issue.record("a 255-float A for M, K = 16, 16 gave \(String(describing: error))")
            return
        }
        #expect(name == "matmul")
        #expect(
            detail
                == "argument 0 ('A') holds 255 elements (1020 bytes) but the launch reaches 256 elements (M x K = 16 x 16)",
            "\(detail)")
        #expect(program.libraryLaunches == 0)
        let unwritten = try c.toArray().allSatisfy { $0.isNaN }
        #expect(unwritten)
    }
}
