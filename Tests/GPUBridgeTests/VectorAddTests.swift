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

    @Test("a kernel that writes nothing is caught, even on memory that held a correct result")
    func sentinelCatchesSilentKernels() async throws {
        let device = try Device(backend: CPUBackend())
        // A correct run leaves its result in a pooled block; the next run reuses that block for its output.
        #expect(try await VectorAddRun.run(Float.self, count: 4096, on: device).mismatches == 0)
        let a = try device.makeBuffer(copying: (0..<4096).map { Float.sample($0, 1) })
        let b = try device.makeBuffer(copying: (0..<4096).map { Float.sample($0, 2) })
        let c = try device.makeBuffer(of: Float.self, count: 4096)
        try await c.raw.enqueueFill(pattern: [0xA5]).wait()
        let silent = try device.compile(KernelSource(name: "writes_nothing") { _ in })
        try await device.launch(silent, .covering(4096), arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(4096)])
        let out = try c.toArray()
        #expect(zip(out, (0..<4096)).allSatisfy { $0 != Float.sample($1, 1) + Float.sample($1, 2) })
    }

    @Test("Int32 and Double")
    func otherTypes() async throws {
        let device = try Device(backend: CPUBackend())
        #expect(try await VectorAddRun.run(Int32.self, count: 100_000, on: device).mismatches == 0)
        #expect(try await VectorAddRun.run(Double.self, count: 100_000, on: device).mismatches == 0)
    }

    @Test("an element type of the caller's own runs too (the generic path)")
    func callersType() async throws {
        let device = try Device(backend: CPUBackend())
        let run = try await VectorAddRun.run(UInt16.self, count: 100_000, on: device)
        #expect(run.mismatches == 0)
        #expect(run.elementType == "ushort")
    }

    @Test("the kernel writes what the host computes")
    func explicitValues() async throws {
        let device = try Device(backend: CPUBackend())
        let a = try device.makeBuffer(copying: [Float](repeating: 1.5, count: 70_000))
        let b = try device.makeBuffer(copying: (0..<70_000).map { Float($0) })
        let c = try device.makeBuffer(copying: [Float](repeating: -1, count: 70_000))  // a sentinel
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: .swift))
        try await device.launch(
            kernel, .covering(70_000), arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(70_000)])
        let out = try c.toArray()
        #expect(out == (0..<70_000).map { 1.5 + Float($0) })
    }
}

extension UInt16: ReferenceElement {
    public static var kernelTypeName: String { "ushort" }
    public static func sample(_ i: Int, _ salt: Int) -> UInt16 { UInt16((i &* 3 &+ salt) % 1000) }
}
