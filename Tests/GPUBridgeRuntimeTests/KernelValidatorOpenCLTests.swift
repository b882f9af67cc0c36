import GPUBridge
import GPUBridgeTestSupport
import Testing

@Suite("KernelValidator: the CPU backend against OpenCL")
struct KernelValidatorOpenCLTests {
    // Needs an OpenCL platform with a device (PoCL in CI, installed by scripts/test).
    @Test(
        "every built-in kernel validated CPU against OpenCL passes, and both pools get every buffer back",
        .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"))
    func builtins() async throws {
        let cpu = try Device(backend: CPUBackend())
        let opencl = try Device(backend: Machine.openCL[0])
        let catalog = KernelCatalog()
        // Sizes that are not multiples of the group sizes, so the kernels' bounds checks are exercised.
        let sizes = ["matmul": 67, "softmax_rows": 300, "cosine_scores": 2001, "topk_select": 2001]
        for id in BuiltinKernelValidation.kernels {
            let report = try await KernelValidator(seed: 9).validate(
                try catalog.definition(id), reference: cpu, candidate: opencl,
                launch: try BuiltinKernelValidation.launch(id, size: sizes[id] ?? 100_003))
            #expect(report.passed, "\(report)")
            #expect(!report.buffers.isEmpty, "\(id) compared no buffer")
            #expect(report.candidateDevice.hasPrefix("opencl:"))
        }
        #expect(cpu.pool.statistics.bytesInUse == 0)
        #expect(opencl.pool.statistics.bytesInUse == 0)
    }

    @Test(
        "a twin whose OpenCL text is wrong at index 137 is reported there against the CPU's vector_add",
        .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"))
    func wrongText() async throws {
        let cpu = try Device(backend: CPUBackend())
        let opencl = try Device(backend: Machine.openCL[0])
        let vectorAdd = try KernelCatalog().definition("vector_add")
        let twin = KernelDefinition(
            id: "vector_add_wrong_text", summary: "vector_add, off by one at 137",
            parameters: vectorAdd.parameters,
            portableText: """
                GB_KERNEL wrong_add(GB_GLOBAL const float* a, GB_GLOBAL const float* b, GB_GLOBAL float* c, int n) {
                    int i = GB_GLOBAL_ID(0);
                    if (i < n) c[i] = a[i] + b[i] + (i == 137 ? 1.0f : 0.0f);
                }
                """,
            entryPoint: "wrong_add", swift: nil)
        let n = 500
        let launch = ValidationLaunch(
            .covering(n),
            arguments: [
                .buffer(.float32, count: n), .buffer(.float32, count: n), .buffer(.float32, count: n),
                .int32(Int32(n)),
            ])
        let report = try await KernelValidator(seed: 4).validate(
            reference: vectorAdd, on: cpu, candidate: twin, on: opencl, launch: launch)
        let inputs = try launch.initialContents(seed: 4)
        let a = (inputs[0] ?? []).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let b = (inputs[1] ?? []).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(!report.passed)
        #expect(report.buffers.map(\.name) == ["c"])
        #expect(report.buffers[0].mismatches == 1)
        #expect(
            report.firstMismatch
                == ElementMismatch(
                    buffer: "c", index: 137, reference: .float32(a[137] + b[137]),
                    candidate: .float32(a[137] + b[137] + 1)))
        #expect(cpu.pool.statistics.bytesInUse == 0)
        #expect(opencl.pool.statistics.bytesInUse == 0)
    }
}
