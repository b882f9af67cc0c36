/// Element types the reference kernels are written for, with their names in OpenCL C and CUDA.
public protocol ReferenceElement: BitwiseCopyable, Sendable, Equatable {
    /// The type's name in OpenCL C and CUDA C (`float`, `int`, `double`).
    static var kernelTypeName: String { get }
    static func + (a: Self, b: Self) -> Self
    /// A deterministic test value for index `i`.
    static func sample(_ i: Int, _ salt: Int) -> Self
}

extension Float: ReferenceElement {
    public static var kernelTypeName: String { "float" }
    public static func sample(_ i: Int, _ salt: Int) -> Float { Float((i &* 7 &+ salt) % 1000) * 0.25 }
}

extension Double: ReferenceElement {
    public static var kernelTypeName: String { "double" }
    public static func sample(_ i: Int, _ salt: Int) -> Double { Double((i &* 13 &+ salt) % 100_000) * 0.125 }
}

extension Int32: ReferenceElement {
    public static var kernelTypeName: String { "int" }
    public static func sample(_ i: Int, _ salt: Int) -> Int32 {
        Int32(truncatingIfNeeded: (i &* 31 &+ salt) % 1_000_003) - 500_000
    }
}

/// The kernels every backend runs in `gpubridge run` and `gpubridge selftest`, in each backend's language.
public enum ReferenceKernels {
    /// `c[i] = a[i] + b[i]` for `i < n`, with parameters `(a, b, c, n)` where `n` is `int32`.
    public static func vectorAdd<Element: ReferenceElement>(_ element: Element.Type, language: KernelLanguage)
        -> KernelSource
    {
        let t = Element.kernelTypeName
        let name = "vector_add_\(t)"
        let parameters: [KernelParameter] = [
            .buffer("a", Element.self, extent: .argument(3)),
            .buffer("b", Element.self, extent: .argument(3)),
            .buffer("c", Element.self, extent: .argument(3)),
            .scalar(name: "n", type: .int32),
        ]
        switch language {
        case .openCLC:
            let pragma = t == "double" ? "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n" : ""
            return KernelSource(
                name: name, language: .openCLC,
                text: """
                    \(pragma)__kernel void \(name)(__global const \(t)* restrict a, __global const \(t)* restrict b,
                                             __global \(t)* restrict c, const int n) {
                        int i = (int)get_global_id(0);
                        if (i < n) c[i] = a[i] + b[i];
                    }
                    """, entryPoint: name, parameters: parameters)
        case .cuda:
            return KernelSource(
                name: name, language: .cuda,
                text: """
                    extern "C" __global__ void \(name)(const \(t)* __restrict__ a, const \(t)* __restrict__ b,
                                                      \(t)* __restrict__ c, int n) {
                        int i = blockIdx.x * blockDim.x + threadIdx.x;
                        if (i < n) c[i] = a[i] + b[i];
                    }
                    """, entryPoint: name, parameters: parameters)
        case .swift:
            return KernelSource(name: name, parameters: parameters, swift: swiftVectorAdd(Element.self))
        }
    }

    /// The Swift body for `Element`, specialised for each element type the package knows: called from another
    /// module, a generic body would add each pair through the protocol's witness table.
    static func swiftVectorAdd<Element: ReferenceElement>(_: Element.Type) -> SwiftKernel.Body {
        if Element.self == Float.self { return vectorAddBody(Float.self) }
        if Element.self == Double.self { return vectorAddBody(Double.self) }
        if Element.self == Int32.self { return vectorAddBody(Int32.self) }
        return vectorAddBody(Element.self)
    }

    private static func vectorAddBody<Element: ReferenceElement>(_: Element.Type) -> SwiftKernel.Body {
        { context in
            let a = try context.buffer(0, as: Element.self)
            let b = try context.buffer(1, as: Element.self)
            let c = try context.buffer(2, as: Element.self)
            let n = try context.integer(3)
            let range = context.items
            let upper = min(range.upperBound, n)
            var i = range.lowerBound
            while i < upper {
                c[i] = a[i] + b[i]
                i += 1
            }
        }
    }

    /// The language a device's backend compiles reference kernels from.
    public static func language(for device: Device) -> KernelLanguage {
        switch device.id.backend {
        case .cpu: return .swift
        case .opencl: return .openCLC
        case .cuda: return .cuda
        }
    }
}

/// The reference end-to-end VectorAdd: allocate, copy in, compile, launch, copy out, verify against a host result.
public struct VectorAddRun: Sendable {
    /// Time each phase took on the host.
    public struct Phases: Sendable, Hashable, Codable {
        /// The three device buffers made.
        public var allocate: Duration = .zero
        /// Both inputs copied from host arrays that exist, and the output filled with a sentinel.
        public var copyIn: Duration = .zero
        public var compile: Duration = .zero
        /// The launch, awaited until the kernel finished.
        public var launch: Duration = .zero
        /// The output copied into a host array made and filled with a sentinel before this phase.
        public var copyOut: Duration = .zero
        /// Every element compared with the host's sum (zero when not verified).
        public var verify: Duration = .zero
    }

    public var device: DeviceID
    public var elements: Int
    public var elementType: String
    public var phases: Phases
    /// Device time of the kernel, where the backend measures it.
    public var kernelTime: Duration?
    /// Elements that differed from the host result (0 when verified and correct; nil when not verified).
    public var mismatches: Int?

    /// Runs VectorAdd of `count` elements on `device`; verifies every element when `verify` is true.
    public static func run<Element: ReferenceElement>(
        _ element: Element.Type, count: Int, on device: Device, verify: Bool = true,
        options: CompileOptions = CompileOptions()
    ) async throws(GPUBridgeError) -> VectorAddRun {
        // The element types this module conforms are run through calls with the concrete type, which the optimizer
        // specialises: an unspecialised generic loop made and checked the inputs about 50 times slower (5 s of
        // host work around 85 ms of timed phases, for 20 000 000 floats).
        switch element {
        case is Float.Type:
            return try await measure(Float.self, count: count, on: device, verify: verify, options: options)
        case is Double.Type:
            return try await measure(Double.self, count: count, on: device, verify: verify, options: options)
        case is Int32.Type:
            return try await measure(Int32.self, count: count, on: device, verify: verify, options: options)
        default:
            return try await measure(Element.self, count: count, on: device, verify: verify, options: options)
        }
    }

    private static func measure<Element: ReferenceElement>(
        _ element: Element.Type, count: Int, on device: Device, verify: Bool, options: CompileOptions
    ) async throws(GPUBridgeError) -> VectorAddRun {
        guard count >= 1, count <= Int(Int32.max) else {
            throw .invalidArgument(name: "size", value: String(count), limit: "1...\(Int32.max) elements")
        }
        let clock = ContinuousClock()
        var phases = Phases()
        let a = (0..<count).map { Element.sample($0, 1) }
        let b = (0..<count).map { Element.sample($0, 2) }

        var t = clock.now
        let da = try device.makeBuffer(of: Element.self, count: count)
        let db = try device.makeBuffer(of: Element.self, count: count)
        let dc = try device.makeBuffer(of: Element.self, count: count)
        phases.allocate = clock.now - t

        t = clock.now
        try da.copy(from: a)
        try db.copy(from: b)
        // The output starts as a sentinel no sum of the samples equals (bytes 0xA5: a negative number for every
        // element type), so a kernel that writes nothing, or misses elements, shows as mismatches even when the pool
        // hands out memory that held a correct result before.
        try await dc.raw.enqueueFill(pattern: [0xA5]).wait()
        phases.copyIn = clock.now - t

        t = clock.now
        let kernel = try device.compile(
            ReferenceKernels.vectorAdd(Element.self, language: ReferenceKernels.language(for: device)), options: options
        )
        phases.compile = clock.now - t

        t = clock.now
        let result = try await device.launch(
            kernel, .covering(count, groupSize: min(256, device.info.maxGroupItems)),
            arguments: [.buffer(da), .buffer(db), .buffer(dc), .int32(Int32(count))])
        phases.launch = clock.now - t

        // The result is read back into a host array the run already holds, as a caller that reads results repeatedly
        // does (`Buffer.copy(to:)`), so the phase times the copy and not the first touch of fresh host pages. The array
        // starts as a second sentinel (bytes 0x5A: a large positive number for every element type), so a copy that
        // skips elements shows as mismatches even where the device sentinel was overwritten.
        var c = [Element](unsafeUninitializedCapacity: count) { storage, initialized in
            UnsafeMutableRawBufferPointer(storage).initializeMemory(as: UInt8.self, repeating: 0x5A)
            initialized = count
        }
        t = clock.now
        try dc.copy(to: &c)
        phases.copyOut = clock.now - t

        var mismatches: Int?
        if verify {
            t = clock.now
            var bad = 0
            for i in 0..<count where c[i] != a[i] + b[i] { bad += 1 }
            mismatches = bad
            phases.verify = clock.now - t
        }
        return VectorAddRun(
            device: device.id, elements: count, elementType: Element.kernelTypeName, phases: phases,
            kernelTime: result.timings?.duration, mismatches: mismatches)
    }
}
