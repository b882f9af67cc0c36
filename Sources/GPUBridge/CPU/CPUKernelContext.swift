/// What a Swift kernel sees during one call on the CPU backend: its arguments and the work-groups it must run.
///
/// A launch is split into contiguous ranges of work-groups, one per call, run concurrently on the host's cores. The
/// kernel processes every work-item of `groups`; `items` gives the matching global range for 1-D launches.
public struct CPUKernelContext {
    /// The kernel's name (`KernelSource.name`), for errors.
    public let kernel: String
    /// The arguments, in declared order.
    public let arguments: [ResolvedArgument]
    /// The launch shape.
    public let launch: Launch
    /// The linear work-group indices this call must run.
    public let groups: Range<Int>

    /// For 1-D launches: the global work-item indices covered by `groups` (`groups * groupSize.x`).
    public var items: Range<Int> {
        let size = launch.groupSize.x * launch.groupSize.y * launch.groupSize.z
        return groups.lowerBound * size..<groups.upperBound * size
    }

    /// Calls `body` with the (x, y, z) global index of every work-item in this call's groups.
    public func forEachWorkItem(_ body: (_ x: Int, _ y: Int, _ z: Int) throws -> Void) rethrows {
        let g = launch.groups, s = launch.groupSize
        for group in groups {
            let gx = group % g.x, gy = (group / g.x) % g.y, gz = group / (g.x * g.y)
            for lz in 0..<s.z {
                for ly in 0..<s.y {
                    for lx in 0..<s.x {
                        try body(gx * s.x + lx, gy * s.y + ly, gz * s.z + lz)
                    }
                }
            }
        }
    }

    /// Argument `index` as a typed buffer pointer over its whole length.
    public func buffer<Element: BitwiseCopyable>(_ index: Int, as type: Element.Type) throws(GPUBridgeError)
        -> UnsafeMutableBufferPointer<Element>
    {
        guard index >= 0, index < arguments.count else {
            throw .argumentMismatch(kernel: kernel, detail: "argument \(index) requested, \(arguments.count) given")
        }
        guard case let .memory(region) = arguments[index] else {
            throw .argumentMismatch(
                kernel: kernel, detail: "argument \(index) is a scalar, expected a buffer of \(Element.self)")
        }
        let count = region.byteCount / MemoryLayout<Element>.stride
        guard let base = UnsafeMutableRawPointer(bitPattern: UInt(region.handle) + UInt(region.offset)) else {
            return UnsafeMutableBufferPointer(start: nil, count: 0)
        }
        return UnsafeMutableBufferPointer(start: base.bindMemory(to: Element.self, capacity: count), count: count)
    }

    /// Argument `index` as a scalar.
    public func scalar(_ index: Int) throws(GPUBridgeError) -> ScalarValue {
        guard index >= 0, index < arguments.count, case let .scalar(value) = arguments[index] else {
            throw .argumentMismatch(kernel: kernel, detail: "argument \(index) is not a scalar")
        }
        return value
    }

    public func int32(_ index: Int) throws(GPUBridgeError) -> Int32 {
        guard case let .int32(v) = try scalar(index) else { throw typeError(index, "int32") }
        return v
    }

    public func uint32(_ index: Int) throws(GPUBridgeError) -> UInt32 {
        guard case let .uint32(v) = try scalar(index) else { throw typeError(index, "uint32") }
        return v
    }

    public func int64(_ index: Int) throws(GPUBridgeError) -> Int64 {
        guard case let .int64(v) = try scalar(index) else { throw typeError(index, "int64") }
        return v
    }

    public func float(_ index: Int) throws(GPUBridgeError) -> Float {
        guard case let .float32(v) = try scalar(index) else { throw typeError(index, "float32") }
        return v
    }

    public func double(_ index: Int) throws(GPUBridgeError) -> Double {
        guard case let .float64(v) = try scalar(index) else { throw typeError(index, "float64") }
        return v
    }

    /// An integer scalar of any width, as `Int`.
    public func integer(_ index: Int) throws(GPUBridgeError) -> Int {
        guard let v = try scalar(index).integerValue else { throw typeError(index, "an integer") }
        return v
    }

    private func typeError(_ index: Int, _ expected: String) -> GPUBridgeError {
        .argumentMismatch(kernel: kernel, detail: "argument \(index) is \(arguments[index]), expected \(expected)")
    }
}
