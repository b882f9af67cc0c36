/// What a launch of a kernel must satisfy beyond its parameters' kinds, types and extents: the group shape its text
/// was written for, and the ranges of its integer scalars. A kernel whose shared arrays are indexed by the local id,
/// or by a scalar, reads and writes past them when launched outside these limits, so the runtime checks them before
/// any backend runs the launch (`Device.launch`), and refuses a launch outside them with `invalidArgument` naming the
/// argument, the value and the limit.
///
/// A value type, part of a `KernelSource`: any thread may read it; checking it costs a few comparisons per launch.
public struct LaunchLimits: Sendable, Hashable {
    /// The group shape a launch must have exactly, when the kernel is written for one (a tile in shared memory);
    /// unused dimensions count as 1, so 16x16 and 16x16x1 are the same shape.
    public var groupSize: Extent3?
    /// The most work-items a group may have along x, when a shared array of that many elements is indexed by the
    /// local id along x; the group's y and z must then be 1.
    public var maxGroupWidth: Int?
    /// Whether the group's width along x must be a power of two: a tree reduction that halves its step each round
    /// (`for (s = size / 2; s > 0; s >>= 1)`) leaves elements out of any other width and answers wrongly.
    public var powerOfTwoWidth: Bool
    /// The range each integer scalar argument must lie in, by argument index.
    public var scalarRanges: [Int: ClosedRange<Int>]

    public init(
        groupSize: Extent3? = nil, maxGroupWidth: Int? = nil, powerOfTwoWidth: Bool = false,
        scalarRanges: [Int: ClosedRange<Int>] = [:]
    ) {
        self.groupSize = groupSize
        self.maxGroupWidth = maxGroupWidth
        self.powerOfTwoWidth = powerOfTwoWidth
        self.scalarRanges = scalarRanges
    }

    /// Checks `launch` and `arguments` (of the kernel named `kernel`, whose parameters are `parameters` where
    /// declared) against these limits.
    func check(
        _ launch: Launch, arguments: [KernelArgument], kernel: String, parameters: [KernelParameter]?
    ) throws(GPUBridgeError) {
        if let shape = groupSize, launch.groupSize.components != shape.components {
            throw .invalidArgument(
                name: "group size of '\(kernel)'", value: "\(launch.groupSize)",
                limit: "exactly \(shape) (the tile its text is written for)")
        }
        if let width = maxGroupWidth,
            launch.groupSize.x > width || launch.groupSize.y != 1 || launch.groupSize.z != 1
        {
            throw .invalidArgument(
                name: "group size of '\(kernel)'", value: "\(launch.groupSize)",
                limit: "at most \(width) work-items along x, and 1 along y and z (its shared arrays hold \(width))")
        }
        let width = launch.groupSize.x
        if powerOfTwoWidth, width < 1 || width & (width - 1) != 0 {
            throw .invalidArgument(
                name: "group size of '\(kernel)'", value: "\(launch.groupSize)",
                limit: "a power of two along x (its tree reduction halves the group each round)")
        }
        for (index, range) in scalarRanges.sorted(by: { $0.key < $1.key }) {
            let name = parameters.flatMap { index < $0.count ? $0[index].name : nil } ?? "argument \(index)"
            guard index < arguments.count, case let .scalar(value) = arguments[index], let n = value.integerValue else {
                throw .argumentMismatch(
                    kernel: kernel, detail: "argument \(index) ('\(name)') is not an integer scalar")
            }
            guard range.contains(n) else {
                throw .invalidArgument(
                    name: "argument \(index) ('\(name)') of '\(kernel)'", value: String(n),
                    limit: "\(range.lowerBound)...\(range.upperBound)")
            }
        }
    }
}
