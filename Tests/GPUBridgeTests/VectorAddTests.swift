import GPUBridge
import Testing

@Suite("VectorAdd on the CPU backend")
struct VectorAddTests {
    @Test("end to end, compared element-wise with the host", arguments: [1, 1000, 10_000_000])
    func vectorAddFloat(count: Int) async throws {
        let device = try Device(backend: CPUBackend())
        let run = try await VectorAddRun.run(Float.self, count: count, on: device)
        #expect(run.mismatches == 0)
        #expect(run.elements == count)
    }

    @Test("Int32 and Double")
    func otherTypes() async throws {
        let device = try Device(backend: CPUBackend())
        #expect(try await VectorAddRun.run(Int32.self, count: 100_000, on: device).mismatches == 0)
        #expect(try await VectorAddRun.run(Double.self, count: 100_000, on: device).mismatches == 0)
    }

    @Test("the kernel writes what the host computes")
    func explicitValues() async throws {
        let device = try Device(backend: CPUBackend())
        let a = try device.makeBuffer(copying: [Float](repeating: 1.5, count: 70_000))
        let b = try device.makeBuffer(copying: (0 ..< 70_000).map { Float($0) })
        let c = try device.makeBuffer(of: Float.self, count: 70_000)
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: .swift))
        try await device.launch(kernel, .covering(70_000), arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(70_000)])
        let out = try c.toArray()
        #expect(out[0] == 1.5)
        #expect(out[69_999] == 70_000.5)
    }
}
