import Glibc
import GPUBridgeTestSupport
import Testing

@testable import GPUBridge

/// Whether the OpenBLAS the CPU backend looks for first can be loaded on this machine (CI installs it).
private let openBLASInstalled: Bool = {
    guard let handle = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL) else { return false }
    dlclose(handle)
    return true
}()

/// Whether `GPUBRIDGE_BLAS=off` turns BLAS off for this test process.
private let blasSwitchedOff = FileStore.environment("GPUBRIDGE_BLAS")?.lowercased() == "off"

private let blasFound: Bool = {
    if case .success = BLASLibrary.shared { return true }
    return false
}()

/// (M, N, K) shapes, most of them not multiples of the 16x16 tile.
private let shapes: [(m: Int, n: Int, k: Int)] = [
    (1, 1, 1), (17, 33, 5), (100, 1, 100), (128, 128, 128), (257, 129, 65),
]

@Suite("CPU matmul through OpenBLAS and the built-in fallback")
struct BLASMatmulTests {
    static func mismatches(_ kernel: Kernel, on device: Device, m: Int, n: Int, k: Int) async throws -> Int {
        try await MatmulCheck.mismatches(kernel, on: device, m: m, n: n, k: k)
    }

    /// A Swift kernel that runs `CPUMatmul` with `implementation`, split into chunks for any launch of two or more
    /// groups (`perGroup`), so chunk boundaries fall inside row bands.
    static func kernel(_ implementation: CPUMatmul.Implementation, on device: Device) throws -> Kernel {
        try device.compile(
            KernelSource(name: "matmul_test", scheduling: .perGroup) { context in
                try CPUMatmul.run(context, using: implementation)
            })
    }

    /// A CPU device with five cores: twenty chunks per split launch, so chunks start and end mid-row.
    static func device() throws -> Device { try Device(backend: CPUBackend(cores: 5)) }

    @Test("a chunk's tiles are covered by at most three bands, each tile exactly once")
    func bandsCoverTheChunk() {
        for columnTiles in [1, 2, 3, 7] {
            let total = columnTiles * 5
            for lower in 0..<total {
                for upper in lower...total {
                    let bands = CPUMatmul.bands(lower..<upper, columnTiles: columnTiles)
                    var covered: [Int] = []
                    for band in bands {
                        for row in band.rows {
                            for column in band.columns { covered.append(row * columnTiles + column) }
                        }
                    }
                    #expect(bands.count <= 3)
                    #expect(covered.sorted() == Array(lower..<upper), "\(lower)..<\(upper), \(columnTiles) columns")
                }
            }
        }
    }

    @Test(
        "cblas_sgemm on sub-matrices matches the host product", .enabled(if: blasFound, "no CBLAS found: skipped"),
        arguments: shapes.indices)
    func blasPath(_ index: Int) async throws {
        guard case let .success(library) = BLASLibrary.shared else { return }
        let (m, n, k) = shapes[index]
        let device = try Self.device()
        #expect(try await Self.mismatches(Self.kernel(.blas(library), on: device), on: device, m: m, n: n, k: k) == 0)
    }

    @Test("the built-in tiled fallback matches the host product", arguments: shapes.indices)
    func builtinPath(_ index: Int) async throws {
        let (m, n, k) = shapes[index]
        let device = try Self.device()
        #expect(try await Self.mismatches(Self.kernel(.builtin, on: device), on: device, m: m, n: n, k: k) == 0)
    }

    @Test("the catalog's matmul on the CPU backend matches the host product", arguments: shapes.indices)
    func catalogKernel(_ index: Int) async throws {
        let (m, n, k) = shapes[index]
        let device = try Self.device()
        let kernel = try device.compile(KernelCatalog().definition("matmul").source(for: .cpu))
        #expect(try await Self.mismatches(kernel, on: device, m: m, n: n, k: k) == 0)
    }

    @Test("OpenBLAS is found when libopenblas is installed, and the CPU report names it")
    func foundWhenInstalled() throws {
        let line = try #require(CPUBackendProvider().discover().details.first { $0.0 == "blas" }?.1)
        if blasSwitchedOff {
            #expect(!blasFound)
            #expect(line.contains("set to off") && line.hasSuffix("matmul uses the built-in kernel"), "\(line)")
        } else if openBLASInstalled {
            let library = try BLASLibrary.shared.get()
            #expect(library.openBLASConfig?.contains("OpenBLAS") == true, "\(library.summary)")
            // OpenBLAS keeps the thread count it started with, as numpy does: OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS
            // or OMP_NUM_THREADS when set (in that order), else the online cores; never more than the cores nor its
            // MAX_THREADS (64 in Debian's build). Holding it to one thread, as before, fails here on two cores or more.
            let variables: [String] = ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"]
            let setting = variables.compactMap { FileStore.environment($0).flatMap { Int($0) } }.first { $0 >= 1 }
            let online = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
            let expected = min(setting ?? online, online, 64)
            let threads = try #require(library.threadsPerCall)
            #expect(threads == expected, "\(library.summary)")
            #expect(line.contains("\(threads) thread"), "\(line)")
            #expect(line.hasPrefix("OpenBLAS") && line.contains(" at /"), "\(line)")
            // The link the loader opened is resolved to the file behind it.
            #expect(line.contains(LibrarySearch.resolved(library.path)), "\(line)")
        } else {
            #expect(line.hasSuffix("matmul uses the built-in kernel"), "\(line)")
        }
    }

    @Test("discovery names each place tried and why it failed")
    func discoveryReasons() throws {
        let missing = "/nonexistent/gpubridge/libnothing.so"
        guard case let .failure(reason) = BLASLibrary.load(candidates: [missing]) else {
            Issue.record("a path that does not exist was loaded")
            return
        }
        #expect(reason.attempts.count == 1)
        #expect(reason.attempts.first?.candidate == missing)
        #expect(reason.attempts.first?.reason.contains("No such file or directory") == true, "\(reason)")
        #expect(reason.description.hasPrefix("\(missing): "))

        // A library that loads but is no BLAS.
        guard case let .failure(noBLAS) = BLASLibrary.load(candidates: ["libm.so.6"]) else {
            Issue.record("libm was taken for a BLAS")
            return
        }
        #expect(noBLAS.attempts.first?.reason.hasSuffix("does not export cblas_sgemm") == true, "\(noBLAS)")

        // GPUBRIDGE_BLAS: `off` tries nothing; a path is tried first, then the default names.
        guard case let .failure(off) = BLASLibrary.discover(setting: "off") else {
            Issue.record("GPUBRIDGE_BLAS=off found a library")
            return
        }
        #expect(off.attempts == [.init(candidate: "GPUBRIDGE_BLAS", reason: "set to off")])
        switch BLASLibrary.discover(setting: missing) {
        case let .success(library):
            #expect(BLASLibrary.defaultNames.contains(library.name))
        case let .failure(all):
            #expect(all.attempts.map(\.candidate) == [missing] + BLASLibrary.defaultNames)
        }
        #expect(CPUBackendProvider.blasSummary(.failure(reason)).contains(missing))
    }

    @Test("a C buffer smaller than M x N fails the launch instead of being overrun")
    func shortBuffer() async throws {
        let device = try Self.device()
        let kernel = try device.compile(KernelCatalog().definition("matmul").source(for: .cpu))
        let m = 20, n = 20, k = 3
        let a = try device.makeBuffer(copying: [Float](repeating: 1, count: m * k))
        let b = try device.makeBuffer(copying: [Float](repeating: 1, count: k * n))
        let c = try device.makeBuffer(of: Float.self, count: m * n - 1)
        let error = await bridgeError {
            try await device.launch(
                kernel, Launch(groups: Extent3(2, 2), groupSize: Extent3(16, 16)),
                arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(Int32(m)), .int32(Int32(n)), .int32(Int32(k))])
        }
        #expect(
            error?.description.contains("('C') holds \(m * n - 1) elements") == true, "\(String(describing: error))")
    }
}
