import GPUBridge

/// The STREAM kernels (copy, mul, add, triad, dot) in the portable dialect, typed by the `T` define, and in Swift.
enum StreamKernels {
    static let text = """
        #ifndef T
        #define T float
        #endif
        GB_KERNEL stream_copy(GB_GLOBAL const T* GB_RESTRICT a, GB_GLOBAL T* GB_RESTRICT c, int n) {
            int i = GB_GLOBAL_ID(0);
            if (i < n) c[i] = a[i];
        }
        GB_KERNEL stream_mul(GB_GLOBAL const T* GB_RESTRICT c, GB_GLOBAL T* GB_RESTRICT b, T s, int n) {
            int i = GB_GLOBAL_ID(0);
            if (i < n) b[i] = s * c[i];
        }
        GB_KERNEL stream_add(GB_GLOBAL const T* GB_RESTRICT a, GB_GLOBAL const T* GB_RESTRICT b, GB_GLOBAL T* GB_RESTRICT c, int n) {
            int i = GB_GLOBAL_ID(0);
            if (i < n) c[i] = a[i] + b[i];
        }
        GB_KERNEL stream_triad(GB_GLOBAL const T* GB_RESTRICT b, GB_GLOBAL const T* GB_RESTRICT c, GB_GLOBAL T* GB_RESTRICT a, T s, int n) {
            int i = GB_GLOBAL_ID(0);
            if (i < n) a[i] = b[i] + s * c[i];
        }
        GB_KERNEL stream_dot(GB_GLOBAL const T* GB_RESTRICT a, GB_GLOBAL const T* GB_RESTRICT b, GB_GLOBAL T* GB_RESTRICT partial, int n) {
            GB_SHARED T scratch[256];
            int lid = GB_LOCAL_ID(0);
            T acc = 0;
            GB_FOR_EACH_ITEM(i, n) acc += a[i] * b[i];
            scratch[lid] = acc;
            GB_BARRIER();
            for (int s = GB_LOCAL_SIZE(0) / 2; s > 0; s >>= 1) {
                if (lid < s) scratch[lid] += scratch[lid + s];
                GB_BARRIER();
            }
            if (lid == 0) partial[GB_GROUP_ID(0)] = scratch[0];
        }
        """

    /// The kernel `name` (`copy`, `mul`, `add`, `triad`, `dot`) for `device`, with elements of `T`.
    static func source<T: StreamElement>(_ name: String, _ type: T.Type, for device: Device) throws -> (
        KernelSource, CompileOptions
    ) {
        var options = CompileOptions(defines: ["T": T.kernelTypeName])
        if device.info.capabilities.unifiedMemory { options.defines["GB_CONTIGUOUS_ITEMS"] = "1" }
        switch device.id.backend {
        case .cpu:
            return (
                KernelSource(
                    name: "stream_\(name)_\(T.kernelTypeName)", scheduling: name == "dot" ? .perGroup : .perItem,
                    swift: swiftKernel(name, T.self)), options
            )
        case .cuda, .opencl:
            let kernel = PortableKernel(name: "stream_\(name)", text: text, entryPoint: "stream_\(name)")
            return (try kernel.source(for: device.id.backend == .cuda ? .cuda : .openCLC), options)
        }
    }

    static func swiftKernel<T: StreamElement>(_ name: String, _: T.Type) -> SwiftKernel.Body {
        switch name {
        case "copy":
            return { context in
                let a = try context.buffer(0, as: T.self), c = try context.buffer(1, as: T.self)
                let range = context.items.clamped(to: 0..<(try context.integer(2)))
                guard !range.isEmpty else { return }
                (c.baseAddress! + range.lowerBound).update(from: a.baseAddress! + range.lowerBound, count: range.count)
            }
        case "mul":
            return { context in
                let c = try context.buffer(0, as: T.self), b = try context.buffer(1, as: T.self)
                let s = try T.scalar(context, 2)
                for i in context.items.clamped(to: 0..<(try context.integer(3))) { b[i] = s * c[i] }
            }
        case "add":
            return { context in
                let a = try context.buffer(0, as: T.self), b = try context.buffer(1, as: T.self),
                    c = try context.buffer(2, as: T.self)
                for i in context.items.clamped(to: 0..<(try context.integer(3))) { c[i] = a[i] + b[i] }
            }
        case "triad":
            return { context in
                let b = try context.buffer(0, as: T.self), c = try context.buffer(1, as: T.self),
                    a = try context.buffer(2, as: T.self)
                let s = try T.scalar(context, 3)
                for i in context.items.clamped(to: 0..<(try context.integer(4))) { a[i] = b[i] + s * c[i] }
            }
        default:
            return { context in
                let a = try context.buffer(0, as: T.self), b = try context.buffer(1, as: T.self)
                let partial = try context.buffer(2, as: T.self)
                let n = try context.integer(3)
                let groups = context.launch.groups.x
                let pa = UnsafeRawPointer(a.baseAddress!), pb = UnsafeRawPointer(b.baseAddress!)
                let stride = MemoryLayout<T>.stride
                for g in context.groups {
                    // Group g's share: one contiguous chunk (the GB_CONTIGUOUS_ITEMS layout of CPU devices).
                    let chunk = (n + groups - 1) / groups
                    let start = Swift.min(n, g * chunk), end = Swift.min(n, start + chunk)
                    var lanes = SIMD8<T>()
                    var acc: T = 0
                    var i = start
                    while i + 8 <= end {
                        lanes +=
                            pa.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<T>.self)
                            * pb.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<T>.self)
                        i += 8
                    }
                    while i < end { acc += a[i] * b[i]; i += 1 }
                    partial[g] = acc + lanes.sum()
                }
            }
        }
    }
}

extension StreamKernels {
    /// The README's first kernel, as written there (`for i in context.items where i < c.count`), to measure a kernel
    /// written the plain way against the tuned `add`.
    static let readmeAdd = KernelSource(name: "add") { context in
        let a = try context.buffer(0, as: Float.self), b = try context.buffer(1, as: Float.self)
        let c = try context.buffer(2, as: Float.self)
        for i in context.items where i < c.count { c[i] = a[i] + b[i] }
    }
}

/// float32 and float64, as the STREAM kernels use them.
protocol StreamElement: BinaryFloatingPoint, BitwiseCopyable, Sendable, SIMDScalar, Codable {
    static var kernelTypeName: String { get }
    static func argument(_ value: Self) -> KernelArgument
    static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> Self
}

extension Float: StreamElement {
    static func argument(_ value: Float) -> KernelArgument { .float(value) }
    static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> Float { try context.float(index) }
}

extension Double: StreamElement {
    static func argument(_ value: Double) -> KernelArgument { .double(value) }
    static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> Double { try context.double(index) }
}
