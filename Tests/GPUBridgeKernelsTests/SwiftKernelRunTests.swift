#if SwiftKernels
    import Foundation
    import GPUBridge
    import GPUBridgeKernels
    import GPUBridgeOpenCL
    import Testing

    /// The devices a Swift kernel runs on here: the CPU backend, and PoCL's OpenCL device where it is installed.
    enum KernelDevices {
        static let openCL = OpenCLBackendProvider().discover().devices.first
        static let openCLReason: Comment = "needs an OpenCL device (scripts/test installs pocl-opencl-icd)"
        static let float64Reason: Comment = "needs an OpenCL device with cl_khr_fp64 (PoCL's CPU device has it)"
        static var openCLFloat64: Bool { openCL?.info.capabilities.float64 ?? false }

        static func cpu() throws -> [Device] { [try Device(backend: CPUBackend(ordinal: 0))] }
        static func openCLDevice() throws -> [Device] {
            guard let openCL else { throw GPUBridgeError.notFound(kind: "device", name: "OpenCL") }
            return [try Device(backend: openCL)]
        }
    }

    /// Float square roots (correctly rounded everywhere), declared in a file that imports Foundation too: the
    /// kernel's math names must not be ambiguous with Foundation's.
    @GPUKernel
    func roots(_ item: WorkItem, values: MutableDeviceArray<Float>, n: Int32) {
        let i = item.globalID(0)
        if i < n { values[i] = sqrt(values[i]) + floor(Float(i) / 2) }
    }

    /// Compiles `definition` for `device` and launches it over `count` items in groups of 64.
    func run(_ definition: KernelDefinition, on device: Device, count: Int, _ arguments: [KernelArgument]) async throws
    {
        let kernel = try device.compile(try definition.source(for: device.id.backend))
        try await device.launch(kernel, .covering(count, groupSize: 64), arguments: arguments)
    }

    @Suite("Swift kernels (@GPUKernel) run on every backend")
    struct SwiftKernelRunTests {
        @Test("the macro gives each kernel its declared parameters and both implementations")
        func definitions() {
            #expect(saxpyKernel.id == "saxpy")
            #expect(
                saxpyKernel.parameters == [
                    .scalar(name: "a", type: .float32), .buffer("x", Float.self, access: .readOnly),
                    .buffer("y", Float.self, access: .readWrite), .scalar(name: "n", type: .int32),
                ])
            #expect(saxpyKernel.parameters.map(\.access) == [nil, .readOnly, .readWrite, nil])
            #expect(saxpyKernel.backends == [.cuda, .opencl, .cpu])
            let text = saxpyKernel.portable?.text ?? ""
            #expect(text.hasPrefix("GB_KERNEL saxpy(float a, GB_GLOBAL const float* x, GB_GLOBAL float* y, int n) {"))
            #expect(text.contains("const int i = GB_GLOBAL_ID(0);"))
            #expect(text.contains("y[i] = ((a * x[i]) + y[i]);"))
        }

        @Test("saxpy on the CPU backend, exactly")
        func saxpyCPU() async throws { try await Self.saxpy(try KernelDevices.cpu()) }

        @Test("saxpy on OpenCL, exactly", .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func saxpyOpenCL() async throws { try await Self.saxpy(try KernelDevices.openCLDevice()) }

        @Test("a kernel in a file that imports Foundation: sqrt and floor, exact on every device here")
        func foundationImported() async throws {
            let n = 300
            let values = (0..<n).map { Float($0) * 1.25 }
            let expected = (0..<n).map { values[$0].squareRoot() + (Float($0) / 2).rounded(.down) }
            let devices =
                try KernelDevices.cpu() + (KernelDevices.openCL != nil ? try KernelDevices.openCLDevice() : [])
            for device in devices {
                let buffer = try device.makeBuffer(copying: values)
                try await run(rootsKernel, on: device, count: n, [.buffer(buffer), .int32(Int32(n))])
                #expect(try buffer.toArray() == expected, "\(device.id)")
            }
        }

        static func saxpy(_ devices: [Device]) async throws {
            let n = 1_000
            let x = (0..<n).map { Float($0) * 0.5 }
            let y0 = (0..<n).map { Float($0 % 7) }
            let expected = (0..<n).map { 2.5 * x[$0] + y0[$0] }
            for device in devices {
                let xs = try device.makeBuffer(of: Float.self, count: n)
                let ys = try device.makeBuffer(of: Float.self, count: n + 1)
                try xs.copy(from: x)
                try ys.copy(from: y0 + [-7])  // one element past n: must stay as it was
                try await run(
                    saxpyKernel, on: device, count: n, [.float(2.5), .buffer(xs), .buffer(ys), .int32(Int32(n))])
                let out = try ys.toArray()
                #expect(Array(out.prefix(n)) == expected, "\(device.id)")
                #expect(out[n] == -7, "\(device.id) wrote past n")
            }
        }

        @Test("Double math and conversions on the CPU backend match a host reference (1e-12 relative)")
        func doubleMathCPU() async throws { try await Self.doubleMath(try KernelDevices.cpu()) }

        @Test(
            "Double math and conversions on OpenCL match a host reference (1e-12 relative)",
            .enabled(if: KernelDevices.openCLFloat64, KernelDevices.float64Reason))
        func doubleMathOpenCL() async throws { try await Self.doubleMath(try KernelDevices.openCLDevice()) }

        static func doubleMath(_ devices: [Device]) async throws {
            let n = 500
            let input = (0..<n).map { Double($0 - 250) * 0.037 }
            let expected = (0..<n).map { i -> Double in
                let x = input[i]
                var r =
                    Foundation.sqrt(Swift.abs(x)) + Foundation.exp(-Swift.abs(x)) + Foundation.log(1.0 + Swift.abs(x))
                r +=
                    Foundation.pow(Swift.abs(x), 1.5) * 0.25 + Foundation.sin(x) * Foundation.cos(x)
                    + Foundation.tanh(x)
                r = Foundation.fma(r, 0.5, Foundation.floor(x) - Foundation.ceil(x))
                r = Swift.max(Swift.min(r, 1000.0), -1000.0)
                return x < 0 ? -r : r + Double(i % 3)
            }
            for device in devices {
                let ins = try device.makeBuffer(of: Double.self, count: n)
                let outs = try device.makeBuffer(of: Double.self, count: n)
                try ins.copy(from: input)
                try outs.copy(from: [Double](repeating: .nan, count: n))
                try await run(doubleMathKernel, on: device, count: n, [.buffer(ins), .buffer(outs), .int32(Int32(n))])
                let out = try outs.toArray()
                let worst = zip(out, expected).map { Swift.abs($0 - $1) / Swift.max(1, Swift.abs($1)) }.max() ?? .nan
                #expect(worst <= 1e-12, "\(device.id): largest relative difference \(worst)")
            }
        }

        @Test("integer loops, bitwise operators and wrapping arithmetic on the CPU backend, exactly")
        func integersCPU() async throws { try await Self.integers(try KernelDevices.cpu()) }

        @Test(
            "integer loops, bitwise operators and wrapping arithmetic on OpenCL, exactly",
            .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func integersOpenCL() async throws { try await Self.integers(try KernelDevices.openCLDevice()) }

        static func integers(_ devices: [Device]) async throws {
            let n = 700
            let seeds = (0..<n).map { UInt32(truncatingIfNeeded: $0 &* 2_654_435_761) }
            // The reference, written out here as plain Swift.
            let expected = seeds.map { seed -> Int32 in
                var h = seed
                for k in 0..<8 {
                    h = (h ^ (h >> 13)) &* 0x5bd1_e995
                    h ^= UInt32(k) << 3
                }
                let sum: Int32 = 15 + (10 + 7 + 4 + 1)
                var steps: Int32 = 0
                var m = h % 97
                while m != 0 {
                    steps += 1
                    if steps > 50 { break }
                    if m & 1 == 0 {
                        m /= 2
                        continue
                    }
                    m = (m &* 3 &+ 1) % 97
                }
                return Int32(h & 0xffff) - sum + steps * 1000
            }
            for device in devices {
                let ins = try device.makeBuffer(of: UInt32.self, count: n)
                let outs = try device.makeBuffer(of: Int32.self, count: n)
                try ins.copy(from: seeds)
                try outs.copy(from: [Int32](repeating: .min, count: n))
                try await run(integerMixKernel, on: device, count: n, [.buffer(ins), .buffer(outs), .int32(Int32(n))])
                let out = try outs.toArray()
                let first = out.indices.first { out[$0] != expected[$0] }
                #expect(first == nil, "\(device.id): first difference at \(first ?? -1)")
            }
        }
    }
#endif
