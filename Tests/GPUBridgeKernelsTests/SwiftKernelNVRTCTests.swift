#if SwiftKernels
    import GPUBridge
    import GPUBridgeCUDA
    import GPUBridgeKernels
    import Testing

    /// The text `@GPUKernel` generates compiles under NVRTC (no GPU needed); CI installs NVRTC from PyPI.
    @Suite(
        "Swift kernels compile under NVRTC",
        .enabled(
            if: (try? NVRTCCompiler.shared.get()) != nil,
            "NVRTC not found: pip install nvidia-cuda-nvrtc, or set GPUBRIDGE_NVRTC"))
    struct SwiftKernelNVRTCTests {
        static let kernels = [
            saxpyKernel, doubleMathKernel, integerMixKernel, rootsKernel, addKernel, activateKernel, histogramKernel,
            floatAtomicsKernel,
        ]

        @Test("every sample kernel compiles to a cubin for sm_80 and sm_90", arguments: ["sm_80", "sm_90"])
        func cubins(architecture: String) throws {
            let nvrtc = try NVRTCCompiler.shared.get()
            for definition in Self.kernels {
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
