import Glibc
import GPUBridge
import GPUBridgeCUDA
import Testing

/// Real NVRTC compilations; no GPU or driver needed. Skipped (visibly) on a machine without NVRTC; CI installs it
/// from PyPI (`nvidia-cuda-nvrtc`), so there they always run.
@Suite(
    "NVRTC compiler",
    .enabled(if: CUDATestSupport.hasNVRTC, "NVRTC not found: pip install nvidia-cuda-nvrtc, or set GPUBRIDGE_NVRTC"))
struct NVRTCCompilerTests {
    var nvrtc: NVRTCCompiler { CUDATestSupport.nvrtc! }  // the suite only runs when it was found

    /// ELF magic, and e_machine (offset 18, little-endian) == EM_CUDA (190).
    func expectCubin(_ binary: KernelBinary, containing name: String) {
        #expect(binary.format == "cubin")
        #expect(Array(binary.bytes.prefix(4)) == [0x7F, 0x45, 0x4C, 0x46])
        #expect(binary.bytes.count > 20)
        if binary.bytes.count > 20 {
            #expect(UInt16(binary.bytes[18]) | UInt16(binary.bytes[19]) << 8 == 190)
        }
        let needle = Array(name.utf8)
        #expect(binary.bytes.indices.contains { binary.bytes[$0...].starts(with: needle) }, "the cubin names \(name)")
    }

    @Test("reports where it was found, its version and its architectures")
    func identity() {
        #expect(nvrtc.version == "NVRTC \(nvrtc.major).\(nvrtc.minor)")
        #expect(nvrtc.major >= 11)
        #expect(nvrtc.path.contains("nvrtc"))
        #expect(!nvrtc.origin.isEmpty)
        #expect(nvrtc.emitsCubin)
        #expect(nvrtc.supportedArchitectures.contains(90))
        #expect(nvrtc.supportedArchitectures == nvrtc.supportedArchitectures.sorted())
    }

    @Test("VectorAdd compiles to a cubin for each architecture", arguments: CUDATestSupport.architectures)
    func vectorAddCubin(architecture: String) throws {
        let source = ReferenceKernels.vectorAdd(Float.self, language: .cuda)
        let binary = try nvrtc.compile(source, architecture: architecture)
        expectCubin(binary, containing: source.entryPoint)
        // The same kernel through the target override, for a device of another architecture.
        let overridden = try nvrtc.compile(source, options: CompileOptions(target: architecture), architecture: "sm_75")
        #expect(overridden.bytes == binary.bytes)
    }

    @Test("Double and Int32 VectorAdd compile")
    func otherElementTypes() throws {
        expectCubin(
            try nvrtc.compile(ReferenceKernels.vectorAdd(Double.self, language: .cuda), architecture: "sm_90"),
            containing: "vector_add_double")
        expectCubin(
            try nvrtc.compile(ReferenceKernels.vectorAdd(Int32.self, language: .cuda), architecture: "sm_90"),
            containing: "vector_add_int")
    }

    @Test("shared memory and __syncthreads kernels compile", arguments: CUDATestSupport.architectures)
    func sharedMemoryKernels(architecture: String) throws {
        expectCubin(try nvrtc.compile(CUDATestSupport.blockSum, architecture: architecture), containing: "block_sum")
        expectCubin(
            try nvrtc.compile(CUDATestSupport.transpose, architecture: architecture), containing: "transpose_tile")
        expectCubin(
            try nvrtc.compile(CUDATestSupport.staticAndDynamicShared, architecture: architecture),
            containing: "static_dynamic_shared")
    }

    @Test("compute_90 gives PTX text with the entry point")
    func ptx() throws {
        let binary = try nvrtc.compile(
            ReferenceKernels.vectorAdd(Float.self, language: .cuda),
            options: CompileOptions(target: "compute_90"), architecture: "sm_90")
        #expect(binary.format == "ptx")
        #expect(binary.bytes.last != 0, "stored without the terminating NUL")
        let text = String(decoding: binary.bytes, as: UTF8.self)
        #expect(text.contains(".entry"))
        #expect(text.contains("vector_add_float"))
        #expect(text.contains(".target sm_90"))
        let shared = String(
            decoding: try nvrtc.compile(
                CUDATestSupport.blockSum, options: CompileOptions(target: "compute_80"),
                architecture: "sm_90"
            ).bytes, as: UTF8.self)
        #expect(shared.contains("bar.sync") || shared.contains("barrier.sync"), "__syncthreads is a barrier in PTX")
    }

    @Test("a syntax error returns NVRTC's log with the file, line and message")
    func syntaxError() {
        do {
            _ = try nvrtc.compile(CUDATestSupport.broken, architecture: "sm_90")
            Issue.record("broken source compiled")
        } catch let GPUBridgeError.compilationFailed(kernel, backend, log) {
            #expect(kernel == "broken")
            #expect(backend == "cuda")
            #expect(log.contains("broken.cu(3)"), "log: \(log)")
            #expect(log.contains("error"), "log: \(log)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("an architecture NVRTC does not support is a compilation failure naming what it supports")
    func unsupportedArchitecture() {
        do {
            _ = try nvrtc.compile(
                ReferenceKernels.vectorAdd(Float.self, language: .cuda), options: CompileOptions(target: "sm_10"),
                architecture: "sm_90")
            Issue.record("sm_10 compiled")
        } catch let GPUBridgeError.compilationFailed(_, _, log) {
            #expect(log.contains("sm_10"))
            #expect(log.contains("sm_90"), "lists the supported architectures: \(log)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("a malformed target is an invalid argument, before NVRTC runs")
    func malformedTarget() {
        for target in ["90", "sm_", "sm_9x", "compute90", "gfx90a"] {
            #expect(throws: GPUBridgeError.self) {
                _ = try nvrtc.compile(
                    ReferenceKernels.vectorAdd(Float.self, language: .cuda), options: CompileOptions(target: target),
                    architecture: "sm_90")
            }
        }
    }

    @Test("only CUDA text is compiled")
    func otherLanguages() {
        #expect(throws: GPUBridgeError.self) {
            _ = try nvrtc.compile(ReferenceKernels.vectorAdd(Float.self, language: .openCLC), architecture: "sm_90")
        }
    }

    @Test("options become the exact NVRTC flags")
    func flags() {
        #expect(nvrtc.flags(for: CompileOptions(), architecture: "sm_90") == ["--gpu-architecture=sm_90"])
        let options = CompileOptions(
            defines: ["WIDTH": "64", "FAST": ""], optimize: false, fastMath: true, target: "compute_80",
            lineInfo: true, maxRegisters: 32, extraFlags: ["--std=c++17"])
        #expect(
            nvrtc.flags(for: options, architecture: "sm_90") == [
                "--gpu-architecture=compute_80", "-DFAST", "-DWIDTH=64", "--device-debug", "--use_fast_math",
                "--generate-line-info", "--maxrregcount=32", "--std=c++17",
            ])
    }

    @Test("every option changes the kernel cache key")
    func cacheKeys() {
        let source = ReferenceKernels.vectorAdd(Float.self, language: .cuda)
        func digest(_ options: CompileOptions) -> String {
            KernelCache.Key(
                backend: "cuda", architecture: "sm_90", compiler: nvrtc.version,
                flags: nvrtc.flags(for: options, architecture: "sm_90"), language: "cuda",
                entryPoint: source.entryPoint, source: source.text ?? ""
            ).digest
        }
        let variants = [
            CompileOptions(), CompileOptions(defines: ["A": "1"]), CompileOptions(defines: ["A": "2"]),
            CompileOptions(optimize: false), CompileOptions(fastMath: true), CompileOptions(target: "sm_80"),
            CompileOptions(target: "compute_90"), CompileOptions(lineInfo: true), CompileOptions(maxRegisters: 64),
            CompileOptions(extraFlags: ["--ftz=true"]),
        ]
        let digests = variants.map(digest)
        #expect(Set(digests).count == variants.count)
        #expect(digest(CompileOptions()) == digest(CompileOptions()))
    }

    @Test("defines and register caps reach NVRTC")
    func optionsReachTheCompiler() throws {
        let guarded = KernelSource(
            name: "guarded", language: .cuda,
            text: """
                #ifndef SCALE
                #error SCALE must be defined
                #endif
                extern "C" __global__ void scale(float* x, int n) {
                    int i = blockIdx.x * blockDim.x + threadIdx.x;
                    if (i < n) x[i] *= SCALE;
                }
                """, entryPoint: "scale")
        #expect(throws: GPUBridgeError.self) { _ = try nvrtc.compile(guarded, architecture: "sm_90") }
        let two = try nvrtc.compile(guarded, options: CompileOptions(defines: ["SCALE": "2.0f"]), architecture: "sm_90")
        let three = try nvrtc.compile(
            guarded, options: CompileOptions(defines: ["SCALE": "3.0f"]), architecture: "sm_90")
        expectCubin(two, containing: "scale")
        #expect(two.bytes != three.bytes)
        let debug = try nvrtc.compile(
            guarded, options: CompileOptions(defines: ["SCALE": "2.0f"], optimize: false), architecture: "sm_90")
        #expect(debug.bytes != two.bytes)
        let capped = try nvrtc.compile(
            guarded, options: CompileOptions(defines: ["SCALE": "2.0f"], maxRegisters: 16), architecture: "sm_90")
        expectCubin(capped, containing: "scale")
        #expect(throws: GPUBridgeError.self) {
            _ = try nvrtc.compile(
                guarded, options: CompileOptions(defines: ["SCALE": "2.0f"], maxRegisters: 0), architecture: "sm_90")
        }
    }

    @Test("a device newer than NVRTC gets PTX for the newest older architecture")
    func newerDevice() throws {
        let newest = try #require(nvrtc.supportedArchitectures.last)
        #expect(nvrtc.target(for: CompileOptions(), architecture: "sm_\(newest + 1000)") == "compute_\(newest)")
        #expect(nvrtc.target(for: CompileOptions(), architecture: "sm_90") == "sm_90")
        #expect(nvrtc.target(for: CompileOptions(target: "compute_80"), architecture: "sm_90") == "compute_80")
        let binary = try nvrtc.compile(
            ReferenceKernels.vectorAdd(Float.self, language: .cuda), architecture: "sm_\(newest + 1000)")
        #expect(binary.format == "ptx")
    }

    @Test("binaries go through the kernel cache: compiled once, then read back from disk")
    func kernelCacheRoundTrip() throws {
        var template = Array("/tmp/gpubridge-cuda-cache-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, let path = mkdtemp(base) else { return nil }
            return String(cString: path)
        }
        let directory = try #require(made)
        let cache = KernelCache(directory: directory)
        let source = ReferenceKernels.vectorAdd(Float.self, language: .cuda)
        let key = KernelCache.Key(
            backend: "cuda", architecture: "sm_90", compiler: nvrtc.version,
            flags: nvrtc.flags(for: CompileOptions(), architecture: "sm_90"), language: "cuda",
            entryPoint: source.entryPoint, source: source.text ?? "")
        var builds = 0
        let first = try cache.binary(for: key) { () throws(GPUBridgeError) -> KernelBinary in
            builds += 1
            return try nvrtc.compile(source, architecture: "sm_90")
        }
        cache.clearMemory()
        let second = try cache.binary(for: key) { () throws(GPUBridgeError) -> KernelBinary in
            builds += 1
            return try nvrtc.compile(source, architecture: "sm_90")
        }
        #expect(builds == 1)
        #expect(second.bytes == first.bytes)
        #expect(second.format == "cubin")
        #expect(cache.statistics.diskHits == 1)
        if let path = cache.path(forDigest: key.digest) { unlink(path) }
        rmdir(directory)
    }

    @Test("an explicit path that does not exist is reported, not silently replaced")
    func explicitPath() throws {
        switch NVRTCCompiler.locate(explicitPath: "/nonexistent/libnvrtc.so.13") {
        case .success:
            Issue.record("found NVRTC at a path that does not exist")
        case let .failure(reason):
            #expect(
                reason.description.contains("/nonexistent/libnvrtc.so.13: no such file")
                    || reason.attempts.contains { $0.contains("/nonexistent/libnvrtc.so.13") })
        }
        let again = try NVRTCCompiler.locate(explicitPath: nvrtc.path).get()
        #expect(again.version == nvrtc.version)
        #expect(again.origin == "explicit path")
    }
}
