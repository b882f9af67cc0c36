/// A size in one to three dimensions. Unused dimensions are 1.
public struct Extent3: Sendable, Hashable, Codable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var z: Int
    /// How many dimensions were given (1, 2 or 3).
    public var dimensions: Int

    public init(_ x: Int) { self.x = x; self.y = 1; self.z = 1; dimensions = 1 }
    public init(_ x: Int, _ y: Int) { self.x = x; self.y = y; self.z = 1; dimensions = 2 }
    public init(_ x: Int, _ y: Int, _ z: Int) { self.x = x; self.y = y; self.z = z; dimensions = 3 }

    /// The three components in order.
    public var components: [Int] { [x, y, z] }

    /// x * y * z, or nil when the product overflows `Int`.
    public var product: Int? {
        let (xy, o1) = x.multipliedReportingOverflow(by: y)
        let (xyz, o2) = xy.multipliedReportingOverflow(by: z)
        return (o1 || o2) ? nil : xyz
    }

    public var description: String {
        switch dimensions {
        case 1: return "\(x)"
        case 2: return "\(x)x\(y)"
        default: return "\(x)x\(y)x\(z)"
        }
    }
}

/// The shape of a kernel launch: how many work-groups (CUDA blocks) and how many work-items (threads) in each,
/// plus dynamic shared (local) memory per group.
///
/// The total number of work-items is `groups * groupSize` per dimension, exactly: CUDA launches `groups` blocks of
/// `groupSize` threads, OpenCL launches a global size of `groups * groupSize` with local size `groupSize`, the CPU
/// backend runs `groups` groups split across its cores. Kernels guard their index against the problem size.
public struct Launch: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Work-groups per dimension (CUDA grid).
    public var groups: Extent3
    /// Work-items per group per dimension (CUDA block, OpenCL local size).
    public var groupSize: Extent3
    /// Bytes of dynamic shared (local) memory per group.
    public var sharedMemoryBytes: Int

    public init(groups: Extent3, groupSize: Extent3, sharedMemoryBytes: Int = 0) {
        self.groups = groups
        self.groupSize = groupSize
        self.sharedMemoryBytes = sharedMemoryBytes
    }

    /// A 1-D launch with enough groups of `groupSize` items to cover `count` items (the last group may be partial).
    /// `count` and `groupSize` are checked when the launch is used, not here.
    public static func covering(_ count: Int, groupSize: Int = 256) -> Launch {
        let groups = groupSize > 0 && count > 0 ? count / groupSize + (count % groupSize == 0 ? 0 : 1) : 0
        return Launch(groups: Extent3(groups), groupSize: Extent3(groupSize))
    }

    /// Total work-items per dimension, or nil on overflow.
    public var globalSize: Extent3? {
        let (x, ox) = groups.x.multipliedReportingOverflow(by: groupSize.x)
        let (y, oy) = groups.y.multipliedReportingOverflow(by: groupSize.y)
        let (z, oz) = groups.z.multipliedReportingOverflow(by: groupSize.z)
        if ox || oy || oz { return nil }
        var e = Extent3(x, y, z)
        e.dimensions = max(groups.dimensions, groupSize.dimensions)
        return e
    }

    public var description: String {
        "groups \(groups) x groupSize \(groupSize)" + (sharedMemoryBytes > 0 ? " shared \(sharedMemoryBytes) B" : "")
    }

    /// Checks every dimension against `device`'s limits; throws `invalidLaunch` naming the first that fails.
    public func validate(for device: DeviceInfo) throws(GPUBridgeError) {
        let names = ["x", "y", "z"]
        for (d, value) in groups.components.enumerated() {
            let limit = d < device.maxGroups.count ? device.maxGroups[d] : 1
            guard value >= 1 else {
                throw .invalidLaunch(name: "groups.\(names[d])", value: String(value), limit: "1...\(limit)")
            }
            guard value <= limit else {
                throw .invalidLaunch(
                    name: "groups.\(names[d])", value: String(value),
                    limit: "1...\(limit) (device \(device.id) max groups)")
            }
        }
        for (d, value) in groupSize.components.enumerated() {
            let limit = d < device.maxGroupSize.count ? device.maxGroupSize[d] : 1
            guard value >= 1 else {
                throw .invalidLaunch(name: "groupSize.\(names[d])", value: String(value), limit: "1...\(limit)")
            }
            guard value <= limit else {
                throw .invalidLaunch(
                    name: "groupSize.\(names[d])", value: String(value),
                    limit: "1...\(limit) (device \(device.id) max group size)")
            }
        }
        guard let items = groupSize.product, items <= device.maxGroupItems else {
            throw .invalidLaunch(
                name: "groupSize", value: groupSize.description,
                limit: "at most \(device.maxGroupItems) items per group on \(device.id)")
        }
        guard let global = globalSize, global.product != nil else {
            throw .invalidLaunch(
                name: "groups * groupSize", value: "\(groups) * \(groupSize)",
                limit: "a total work-item count that fits in \(Int.max)")
        }
        let sharedLimit = device.capabilities.sharedMemoryPerGroup
        guard sharedMemoryBytes >= 0, sharedMemoryBytes <= sharedLimit else {
            throw .invalidLaunch(
                name: "sharedMemoryBytes", value: String(sharedMemoryBytes),
                limit: "0...\(sharedLimit) bytes per group on \(device.id)")
        }
    }
}
