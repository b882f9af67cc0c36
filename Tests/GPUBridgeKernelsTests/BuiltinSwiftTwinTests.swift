#if SwiftKernels
    import GPUBridge
    import GPUBridgeCUDA
    import GPUBridgeKernels
    import Testing
    @testable import gpubridge

    /// A vector_add twin that is wrong at one element: c[137] is one more than a[137] + b[137].
    @GPUKernel
    func vectorAddWrongAt137(
        _ item: WorkItem, a: DeviceArray<Float>, b: DeviceArray<Float>, c: MutableDeviceArray<Float>, n: Int32
    ) {
        let i = item.globalID(0)
        if i < n { c[i] = a[i] + b[i] + (i == 137 ? 1 : 0) }
    }

    /// The Swift twins of the built-in kernels (`BuiltinSwiftTwins`, in the gpubridge target, which `bench twins`
    /// times) against the built-ins, with `KernelValidator` on one device at a time.
    @Suite("Swift twins of the built-in kernels (BuiltinSwiftTwin)")
    struct BuiltinSwiftTwinTests {
        /// One validation: the twin's built-in, the launch `BuiltinKernelValidation` gives it at a size that is no
        /// multiple of the group size, and the tolerance the comparison needs on each backend.
        struct Case: Sendable, CustomTestStringConvertible {
            let builtin: String
            let twin: KernelDefinition
            let size: Int
            /// Float tolerance on the CPU backend and on OpenCL for buffers whose launch sets none (integers compare
            /// exactly whatever is set); nil: the validator's float32 default.
            let cpu: ValidationTolerance?
            let openCL: ValidationTolerance?
            var testDescription: String { builtin }
        }

        /// Elementwise kernels do the same float operations in the same order on both sides: exact. Integers (the
        /// histogram's counts, top-k's indices) compare exactly. The partial sums and matmul carry their own tolerance
        /// in `BuiltinKernelValidation` (the twins visit the input grid-stride where the built-ins take one
        /// contiguous chunk per work-item on CPU devices). On OpenCL the twins of cosine_scores, softmax_rows and
        /// topk_select do the built-ins' C arithmetic in the same order: exact. On the CPU backend:
        /// - cosine_scores: the built-in sums its 64 products in 16 float lanes (`gb_cpu_dot`, C)
        ///   where the twin adds them one by one: each of the dot product and the two squared norms may differ by up to
        ///   64 roundings (64 * 2^-24 of |a| |b|, |a|^2, |b|^2), so a cosine in -1...1 by up to about
        ///   2 * 64 * 2^-24 = 7.6e-6: absolute 1e-5;
        /// - softmax_rows: the built-in's vectorised `exp` is within 2 ulp of `expf` and it sums a row in another
        ///   order than the twin's tree: the float32 default (1e-5 absolute and relative) holds for outputs in 0...1.
        static let cases: [Case] = BuiltinSwiftTwins.all.map { builtin, twin in
            let size: Int =
                switch builtin {
                case "cosine_scores", "topk_select": 2001
                case "matmul": 75
                case "softmax_rows": 1001
                default: 100_003
                }
            let cpu: ValidationTolerance? =
                switch builtin {
                case "cosine_scores": ValidationTolerance(absolute: 1e-5, relative: 0)
                case "softmax_rows", "dot_partial", "sum_partial", "matmul": nil
                default: .exact
                }
            let openCL: ValidationTolerance? =
                ["dot_partial", "sum_partial", "matmul"].contains(builtin) ? nil : .exact
            return Case(builtin: builtin, twin: twin, size: size, cpu: cpu, openCL: openCL)
        }

        static func builtin(_ id: String) throws -> KernelDefinition {
            try #require(BuiltinKernels.all.first { $0.id == id }, "no built-in kernel \(id)")
        }

        @Test("every built-in has one twin; a twin uses shared memory and barriers exactly where its built-in does")
        func coverage() throws {
            #expect(BuiltinSwiftTwins.all.map(\.builtin).sorted() == BuiltinKernels.all.map(\.id).sorted())
            for (id, twin) in BuiltinSwiftTwins.all {
                let theirs = try Self.builtin(id).portable?.text ?? ""
                let mine = twin.portable?.text ?? ""
                #expect(theirs.contains("GB_SHARED") == mine.contains("GB_SHARED"), "\(id)")
                #expect(theirs.contains("GB_BARRIER") == mine.contains("GB_BARRIER"), "\(id)")
            }
        }

        @Test("each twin has its built-in's parameters: names, kinds, element and scalar types, access, order")
        func signatures() throws {
            for (id, twin) in BuiltinSwiftTwins.all {
                let builtin = try Self.builtin(id)
                #expect(twin.parameters.count == builtin.parameters.count, "\(id)")
                for (mine, theirs) in zip(twin.parameters, builtin.parameters) {
                    switch (mine, theirs) {
                    case let (.buffer(name, size, _, access), .buffer(theirName, theirSize, _, theirAccess)):
                        #expect(
                            name == theirName && size == theirSize && access == theirAccess,
                            "\(id): \(mine) against \(theirs)")
                    case let (.scalar(name, type), .scalar(theirName, theirType)):
                        #expect(name == theirName && type == theirType, "\(id): \(mine) against \(theirs)")
                    default:
                        Issue.record("\(id): \(mine) against \(theirs)")
                    }
                }
            }
        }

        @Test("each twin's text does its built-in's statements")
        func texts() {
            let statements: [String: [String]] = [
                "vector_add": ["const int i = GB_GLOBAL_ID(0);", "if ((i < n)) {", "c[i] = (a[i] + b[i]);"],
                "saxpy": ["const int i = GB_GLOBAL_ID(0);", "if ((i < n)) {", "y[i] = ((alpha * x[i]) + y[i]);"],
                "scale": ["const int i = GB_GLOBAL_ID(0);", "if ((i < n)) {", "y[i] = (alpha * x[i]);"],
                "cosine_scores": [
                    "const gb_long a = (((gb_long)(q)) * ((gb_long)(dim)));", "for (int d = 0; d < dim; d++) {",
                    "dot += (u * v);", "((denom > 0.0f) ? (dot / denom) : 0.0f);",
                ],
                "histogram": [
                    "GB_SHARED uint bucket[256];", "GB_BARRIER();",
                    "const int chunk = ((GB_CONTIGUOUS != 0) ? ((((n + items) - 1)) / items) : 1);",
                    "while ((i < end)) {",
                    "GB_ATOMIC_ADD_UINT(&bucket[b], 1u);", "GB_ATOMIC_ADD_UINT(&counts[b1], bucket[b1]);",
                ],
                "dot_partial": ["GB_SHARED float scratch[256];", "acc += (x[i] * y[i]);", "GB_BARRIER();"],
                "sum_partial": ["GB_SHARED float scratch[256];", "acc += x[i];", "GB_BARRIER();"],
                "matmul": ["GB_SHARED float As[256];", "GB_SHARED float Bs[256];", "GB_BARRIER();"],
                "softmax_rows": [
                    "GB_SHARED float scratch[256];", "float m = (-GB_INFINITY);", "if ((row >= rows)) {",
                    "return;", "GB_BARRIER();", "exp((x[(base + ((gb_long)(c1)))] - rowMax))",
                ],
                "topk_select": [
                    "GB_SHARED float bestScore[256];", "GB_SHARED int bestIndex[256];", "for (int j = 0; j < k; j++) {",
                    "scores[(base + ((gb_long)(bestIndex[0])))] = (-GB_INFINITY);",
                ],
            ]
            for (id, twin) in BuiltinSwiftTwins.all {
                let text = twin.portable?.text ?? ""
                for statement in statements[id] ?? ["(no statements listed)"] {
                    #expect(text.contains(statement), "\(id): \(statement) not in\n\(text)")
                }
            }
        }

        @Test("each twin against its built-in on the CPU backend", arguments: cases)
        func cpu(_ validation: Case) async throws {
            let device = try Device(backend: CPUBackend(ordinal: 0))
            try await Self.validate(validation, on: device, tolerance: validation.cpu)
        }

        @Test(
            "each twin against its built-in on OpenCL",
            .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason),
            arguments: cases)
        func openCL(_ validation: Case) async throws {
            let device = try #require(try KernelDevices.openCLDevice().first)
            try await Self.validate(validation, on: device, tolerance: validation.openCL)
        }

        static func validate(_ validation: Case, on device: Device, tolerance: ValidationTolerance?) async throws {
            let launch = try BuiltinKernelValidation.launch(validation.builtin, size: validation.size)
            let report = try await KernelValidator(seed: 11, tolerance: tolerance).validate(
                reference: try builtin(validation.builtin), on: device, candidate: validation.twin, on: device,
                launch: launch)
            #expect(report.passed, "\(report)")
            // The buffers the built-in writes are the ones compared.
            let written: [String: [String]] = [
                "vector_add": ["c"], "saxpy": ["y"], "scale": ["y"], "cosine_scores": ["scores"],
                "histogram": ["counts"], "dot_partial": ["partial"], "sum_partial": ["partial"], "matmul": ["C"],
                "softmax_rows": ["y"], "topk_select": ["outIndex", "outScore"],
            ]
            #expect(report.buffers.map(\.name) == written[validation.builtin], "\(report)")
            #expect(report.buffers.allSatisfy { $0.count > 0 && $0.mismatches == 0 }, "\(report)")
            #expect(device.pool.statistics.bytesInUse == 0)
        }

        @Test("a twin one off at c[137] is reported there, on the CPU backend")
        func wrongTwinCPU() async throws {
            try await Self.wrongTwin(on: try Device(backend: CPUBackend(ordinal: 0)))
        }

        @Test(
            "a twin one off at c[137] is reported there, on OpenCL",
            .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func wrongTwinOpenCL() async throws {
            try await Self.wrongTwin(on: try #require(try KernelDevices.openCLDevice().first))
        }

        static func wrongTwin(on device: Device) async throws {
            let n = 1000
            let launch = try BuiltinKernelValidation.launch("vector_add", size: n)
            let report = try await KernelValidator(seed: 5, tolerance: .exact).validate(
                reference: try builtin("vector_add"), on: device, candidate: vectorAddWrongAt137Kernel, on: device,
                launch: launch)
            let inputs = try launch.initialContents(seed: 5)
            let a = (inputs[0] ?? []).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let b = (inputs[1] ?? []).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(a.count == n && b.count == n)
            #expect(!report.passed)
            #expect(report.buffers.map(\.name) == ["c"])
            #expect(report.buffers.first?.mismatches == 1)
            #expect(
                report.firstMismatch
                    == ElementMismatch(
                        buffer: "c", index: 137, reference: .float32(a[137] + b[137]),
                        candidate: .float32(a[137] + b[137] + 1)))
            #expect(device.pool.statistics.bytesInUse == 0)
        }
    }

    /// The twins' generated text compiles under NVRTC (no GPU needed; CI installs NVRTC from PyPI).
    @Suite(
        "Swift twins of the built-in kernels compile under NVRTC (BuiltinSwiftTwin)",
        .enabled(
            if: (try? NVRTCCompiler.shared.get()) != nil,
            "NVRTC not found: pip install nvidia-cuda-nvrtc, or set GPUBRIDGE_NVRTC"))
    struct BuiltinSwiftTwinNVRTCTests {
        @Test("every twin compiles to a cubin for sm_80 and sm_90", arguments: ["sm_80", "sm_90"])
        func cubins(architecture: String) throws {
            let nvrtc = try NVRTCCompiler.shared.get()
            #expect(BuiltinSwiftTwins.all.count == BuiltinKernels.all.count)
            for (_, definition) in BuiltinSwiftTwins.all {
                let binary = try nvrtc.compile(try definition.source(for: .cuda), architecture: architecture)
                #expect(binary.format == "cubin", "\(definition.id)")
                #expect(Array(binary.bytes.prefix(4)) == [0x7F, 0x45, 0x4C, 0x46], "\(definition.id): not an ELF file")
                let name = Array(definition.id.utf8)
                #expect(
                    binary.bytes.indices.contains { binary.bytes[$0...].starts(with: name) },
                    "the cubin names \(definition.id)")
            }
        }
    }
#endif
