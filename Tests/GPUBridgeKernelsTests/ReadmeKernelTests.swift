#if SwiftKernels
    // README-BEGIN
    import GPUBridge
    import GPUBridgeKernels

    @GPUKernel
    func add(_ item: WorkItem, a: DeviceArray<Float>, b: DeviceArray<Float>, c: MutableDeviceArray<Float>, n: Int32) {
        let i = item.globalID(0)
        if i < n { c[i] = a[i] + b[i] }
    }

    func firstKernel(on device: Device) async throws -> [Float] {  // a CPU, OpenCL or CUDA device
        let a = try device.makeBuffer(copying: [Float](repeating: 1, count: 1024))
        let b = try device.makeBuffer(copying: (0..<1024).map { Float($0) })
        let c = try device.makeBuffer(of: Float.self, count: 1024)
        let kernel = try device.compile(try addKernel.source(for: device.id.backend))
        try await device.launch(kernel, .covering(1024), arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(1024)])
        return try c.toArray()  // [1.0, 2.0, 3.0, 4.0, ...]
    }
    // README-END

    import Foundation
    import GPUBridgeOpenCL
    import Testing

    /// The README's first kernel, run as written on the CPU backend and on OpenCL, and checked to be the text the
    /// README shows.
    @Suite("README: the first kernel, written in Swift")
    struct ReadmeKernelTests {
        static let expected = (0..<1024).map { Float(1 + $0) }

        @Test("runs on the CPU backend")
        func cpu() async throws {
            #expect(try await firstKernel(on: try Device(backend: CPUBackend())) == Self.expected)
        }

        @Test("runs unchanged on OpenCL", .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func openCL() async throws {
            let backend = try #require(KernelDevices.openCL)
            #expect(try await firstKernel(on: try Device(backend: backend)) == Self.expected)
        }

        @Test("is the first Swift block of the README")
        func matchesReadme() throws {
            let here = #filePath
            let root = String(here[..<here.range(of: "/Tests/")!.lowerBound])
            let readme = try String(contentsOfFile: root + "/README.md", encoding: .utf8)
            let test = try String(contentsOfFile: here, encoding: .utf8)
            guard let start = readme.range(of: "```swift\n"), let end = readme[start.upperBound...].range(of: "```")
            else {
                Issue.record("README.md has no swift block")
                return
            }
            let block = String(readme[start.upperBound..<end.lowerBound])
            guard let s = test.range(of: "// README-BEGIN\n"),
                let e = test[s.upperBound...].range(of: "    // README-END")
            else {
                Issue.record("the README-BEGIN/END markers are missing")
                return
            }
            let marked = test[s.upperBound..<e.lowerBound].split(separator: "\n", omittingEmptySubsequences: false)
                .map { $0.hasPrefix("    ") ? String($0.dropFirst(4)) : String($0) }.joined(separator: "\n")
            #expect(block == marked, "README.md's first swift block and this file's marked text differ")
        }
    }
#endif
