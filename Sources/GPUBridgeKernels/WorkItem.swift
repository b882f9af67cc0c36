import GPUBridge

/// One work-item of a Swift kernel (`@GPUKernel`): its index in the launch, in its group, and its group's index, in up
/// to three dimensions. The first parameter of every Swift kernel.
///
/// On CUDA and OpenCL each member becomes the device's intrinsic (`GB_GLOBAL_ID(d)` and so on, see
/// `PortablePrelude`); on the CPU backend the launch makes one value per work-item. A value; any thread. Dimensions
/// other than 0, 1 and 2 read as index 0 and size 1 on the CPU, as OpenCL defines it.
public struct WorkItem: Sendable, Hashable {
    /// Index in the group, per dimension.
    public var local: (x: Int32, y: Int32, z: Int32)
    /// Index of the group, per dimension.
    public var group: (x: Int32, y: Int32, z: Int32)
    /// Work-items per group, per dimension.
    public var groupSize: (x: Int32, y: Int32, z: Int32)
    /// Groups in the launch, per dimension.
    public var groups: (x: Int32, y: Int32, z: Int32)

    @inlinable public init(
        local: (x: Int32, y: Int32, z: Int32), group: (x: Int32, y: Int32, z: Int32),
        groupSize: (x: Int32, y: Int32, z: Int32), groups: (x: Int32, y: Int32, z: Int32)
    ) {
        self.local = local
        self.group = group
        self.groupSize = groupSize
        self.groups = groups
    }

    public static func == (a: WorkItem, b: WorkItem) -> Bool {
        a.local == b.local && a.group == b.group && a.groupSize == b.groupSize && a.groups == b.groups
    }

    public func hash(into hasher: inout Hasher) {
        for v in [local.x, local.y, local.z, group.x, group.y, group.z] { hasher.combine(v) }
    }

    @inlinable static func pick(_ v: (x: Int32, y: Int32, z: Int32), _ d: Int32, _ other: Int32) -> Int32 {
        switch d {
        case 0: return v.x
        case 1: return v.y
        case 2: return v.z
        default: return other
        }
    }

    /// Index in the whole launch along dimension `d` (`GB_GLOBAL_ID(d)`).
    @inlinable public func globalID(_ d: Int32) -> Int32 { groupID(d) &* localSize(d) &+ localID(d) }
    /// Index in the group (`GB_LOCAL_ID(d)`).
    @inlinable public func localID(_ d: Int32) -> Int32 { Self.pick(local, d, 0) }
    /// Index of the group (`GB_GROUP_ID(d)`).
    @inlinable public func groupID(_ d: Int32) -> Int32 { Self.pick(group, d, 0) }
    /// Work-items per group (`GB_LOCAL_SIZE(d)`).
    @inlinable public func localSize(_ d: Int32) -> Int32 { Self.pick(groupSize, d, 1) }
    /// Groups in the launch (`GB_NUM_GROUPS(d)`).
    @inlinable public func groupCount(_ d: Int32) -> Int32 { Self.pick(groups, d, 1) }
    /// Work-items in the launch (`GB_GLOBAL_SIZE(d)`).
    @inlinable public func globalSize(_ d: Int32) -> Int32 { groupCount(d) &* localSize(d) }

    /// Waits until every work-item of the group has reached this call (`GB_BARRIER()`: `__syncthreads()` on CUDA,
    /// `barrier(...)` on OpenCL). A statement of a `@GPUKernel` body only.
    ///
    /// On the CPU backend the kernel's body is split at its barriers and each part runs for every work-item of the
    /// group before the next starts (docs/SWIFT-KERNELS.md, "Barriers on the CPU"), so this call itself is never
    /// reached there. Called directly, outside a launch, it does nothing: the caller is a group of one.
    @inlinable public func barrier() {}

    /// Refuses launches whose sizes pass `Int32` (work-item indices are Int32 in every backend's kernel text).
    @usableFromInline static func checkSizes(_ context: CPUKernelContext) throws {
        let g = context.launch.groups, s = context.launch.groupSize
        for (name, value) in [("groups", g.x * g.y * g.z), ("groupSize", s.x * s.y * s.z)] where value > Int(Int32.max)
        {
            throw GPUBridgeError.invalidArgument(
                name: "launch.\(name) of Swift kernel '\(context.kernel)'", value: "\(value)",
                limit: "at most \(Int32.max) (work-item indices are Int32)")
        }
    }

    /// Calls `body` once per group of `context` with that group's work-items in order of their local index (x
    /// fastest): the CPU backend's loop for a Swift kernel with barriers or shared arrays, which runs each part of
    /// the body for all of `items` in turn. Launches whose sizes pass `Int32` are refused. The array is made once per
    /// call and updated in place per group.
    @inlinable public static func forEachGroup(in context: CPUKernelContext, _ body: ([WorkItem]) throws -> Void) throws
    {
        try checkSizes(context)
        let g = context.launch.groups, s = context.launch.groupSize
        let size = (x: Int32(s.x), y: Int32(s.y), z: Int32(s.z))
        let count = (x: Int32(g.x), y: Int32(g.y), z: Int32(g.z))
        var items: [WorkItem] = []
        items.reserveCapacity(s.x * s.y * s.z)
        for lz in 0..<size.z {
            for ly in 0..<size.y {
                for lx in 0..<size.x {
                    items.append(WorkItem(local: (lx, ly, lz), group: (0, 0, 0), groupSize: size, groups: count))
                }
            }
        }
        for linear in context.groups {
            let group = (Int32(linear % g.x), Int32((linear / g.x) % g.y), Int32(linear / (g.x * g.y)))
            for index in items.indices { items[index].group = group }
            try body(items)
        }
    }

    /// Calls `body` once per work-item of the groups `context` holds, in order (the CPU backend's loop for a Swift
    /// kernel without barriers). Launches whose sizes pass `Int32` are refused.
    @inlinable public static func forEach(
        in context: CPUKernelContext, _ body: (WorkItem) throws -> Void
    ) throws {
        try checkSizes(context)
        let g = context.launch.groups, s = context.launch.groupSize
        let size = (x: Int32(s.x), y: Int32(s.y), z: Int32(s.z))
        let count = (x: Int32(g.x), y: Int32(g.y), z: Int32(g.z))
        var item = WorkItem(local: (0, 0, 0), group: (0, 0, 0), groupSize: size, groups: count)
        for linear in context.groups {
            item.group = (Int32(linear % g.x), Int32((linear / g.x) % g.y), Int32(linear / (g.x * g.y)))
            for lz in 0..<size.z {
                for ly in 0..<size.y {
                    for lx in 0..<size.x {
                        item.local = (lx, ly, lz)
                        try body(item)
                    }
                }
            }
        }
    }
}
