#if SwiftKernels
    import GPUBridge
    import GPUBridgeCUDA
    import GPUBridgeKernels
    import Testing

    // Swift twins of the built-in kernels that use shared memory and barriers, checked against the hand-written ones
    // with KernelValidator. Same parameters, same groups, same tree; the input is visited grid-stride (the built-in
    // visits it in one contiguous chunk per work-item on CPU devices), so sums may differ in their last bits.

    /// `dot_partial`: one partial dot product per group of 256.
    @GPUKernel
    func swiftDotPartial(
        _ item: WorkItem, x: DeviceArray<Float>, y: DeviceArray<Float>, partial: MutableDeviceArray<Float>, n: Int32
    ) {
        let scratch = SharedArray<Float>(count: 256)
        let lid = item.localID(0)
        var acc: Float = 0
        var i = item.globalID(0)
        while i < n {
            acc += x[i] * y[i]
            i += item.globalSize(0)
        }
        scratch[lid] = acc
        item.barrier()
        var s = item.localSize(0) / 2
        while s > 0 {
            if lid < s { scratch[lid] += scratch[lid + s] }
            item.barrier()
            s /= 2
        }
        if lid == 0 { partial[item.groupID(0)] = scratch[0] }
    }

    /// `sum_partial`: one partial sum per group of 256.
    @GPUKernel
    func swiftSumPartial(_ item: WorkItem, x: DeviceArray<Float>, partial: MutableDeviceArray<Float>, n: Int32) {
        let scratch = SharedArray<Float>(count: 256)
        let lid = item.localID(0)
        var acc: Float = 0
        var i = item.globalID(0)
        while i < n {
            acc += x[i]
            i += item.globalSize(0)
        }
        scratch[lid] = acc
        item.barrier()
        var s = item.localSize(0) / 2
        while s > 0 {
            if lid < s { scratch[lid] += scratch[lid + s] }
            item.barrier()
            s /= 2
        }
        if lid == 0 { partial[item.groupID(0)] = scratch[0] }
    }

    /// `matmul`: C = A * B, row-major, 16 x 16 tiles in shared memory.
    @GPUKernel
    func swiftMatmul(
        _ item: WorkItem, A: DeviceArray<Float>, B: DeviceArray<Float>, C: MutableDeviceArray<Float>, M: Int32,
        N: Int32, K: Int32
    ) {
        let As = SharedArray<Float>(count: 256)
        let Bs = SharedArray<Float>(count: 256)
        let tx = item.localID(0)
        let ty = item.localID(1)
        let col = item.groupID(0) * 16 + tx
        let row = item.groupID(1) * 16 + ty
        var acc: Float = 0
        for t in stride(from: Int32(0), to: K, by: 16) {
            As[ty * 16 + tx] = row < M && t + tx < K ? A[Int(row) * Int(K) + Int(t + tx)] : 0
            Bs[ty * 16 + tx] = col < N && t + ty < K ? B[Int(t + ty) * Int(N) + Int(col)] : 0
            item.barrier()
            for k: Int32 in 0..<16 {
                acc += As[ty * 16 + k] * Bs[k * 16 + tx]
            }
            item.barrier()
        }
        if row < M && col < N { C[Int(row) * Int(N) + Int(col)] = acc }
    }

    @Suite("Swift twins of the shared-memory built-ins (dot, sum, tiled matmul) match them")
    struct SwiftReductionTwinTests {
        static let twins: [(builtin: String, twin: KernelDefinition, size: Int)] = [
            ("dot_partial", swiftDotPartialKernel, 100_003), ("sum_partial", swiftSumPartialKernel, 100_003),
            ("matmul", swiftMatmulKernel, 75),
        ]

        static func check(_ devices: [Device]) async throws {
            let catalog = KernelCatalog()
            for device in devices {
                for (id, twin, size) in twins {
                    let report = try await KernelValidator(seed: 7).validate(
                        reference: try catalog.definition(id), on: device, candidate: twin, on: device,
                        launch: try BuiltinKernelValidation.launch(id, size: size))
                    #expect(report.passed, "\(device.id) \(id): \(report)")
                    #expect(!report.buffers.isEmpty, "\(id): nothing compared")
                }
            }
        }

        @Test("on the CPU backend, within the built-ins' sum tolerance")
        func cpu() async throws { try await Self.check(try KernelDevices.cpu()) }

        @Test(
            "on OpenCL, within the built-ins' sum tolerance",
            .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func openCL() async throws { try await Self.check(try KernelDevices.openCLDevice()) }

        @Test(
            "their text compiles under NVRTC for sm_80 and sm_90",
            .enabled(if: (try? NVRTCCompiler.shared.get()) != nil, "NVRTC not found: pip install nvidia-cuda-nvrtc"))
        func nvrtc() throws {
            let nvrtc = try NVRTCCompiler.shared.get()
            for architecture in ["sm_80", "sm_90"] {
                for (_, twin, _) in Self.twins {
                    let binary = try nvrtc.compile(try twin.source(for: .cuda), architecture: architecture)
                    #expect(binary.format == "cubin", "\(twin.id) \(architecture)")
                }
            }
        }
    }
#endif
