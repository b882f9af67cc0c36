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

    /// Whether a loop that spreads `0..<n` over all work-items should give each work-item one contiguous chunk
    /// (true) or walk grid-stride, `i += globalSize(0)` (false): the built-ins' `GB_FOR_EACH_ITEM`. `GB_CONTIGUOUS`
    /// in the kernel text: 1 where the kernel is compiled with `GB_CONTIGUOUS_ITEMS` defined (`KernelCatalog` and
    /// `KernelValidator` define it on OpenCL devices that share host memory, where chunks stream memory and strides
    /// do not), else 0 (GPUs, where neighbouring work-items reading neighbouring elements coalesce). Always true on the
    /// CPU backend. The same in every work-item of a launch.
    @inlinable public var contiguousItems: Bool { true }

    /// Waits until every work-item of the group has reached this call (`GB_BARRIER()`: `__syncthreads()` on CUDA,
    /// `barrier(...)` on OpenCL). A statement of a `@GPUKernel` body only.
    ///
    /// On the CPU backend the kernel's body is split at its barriers and each part runs for every work-item of the
    /// group before the next starts (docs/SWIFT-KERNELS.md, "Barriers on the CPU"), so this call itself is never
    /// reached there. Called directly, outside a launch, it does nothing: the caller is a group of one.
    @inlinable public func barrier() {}

    /// Refuses launches whose sizes pass `Int32` (work-item indices are Int32 in every backend's kernel text): the
    /// groups in all, the work-items of a group, and the work-items along each dimension (`GB_GLOBAL_SIZE(d)`).
    @usableFromInline static func checkSizes(_ context: CPUKernelContext) throws {
        let g = context.launch.groups, s = context.launch.groupSize
        let checks: [(String, [Int])] = [
            ("groups", [g.x, g.y, g.z]), ("groupSize", [s.x, s.y, s.z]), ("global size along x", [g.x, s.x]),
            ("global size along y", [g.y, s.y]), ("global size along z", [g.z, s.z]),
        ]
        for (name, factors) in checks {
            // The product, or nil past Int32.max (the factors are positive: `Launch` refuses others).
            let product = factors.reduce(Int?(1)) { total, factor in
                guard let total else { return nil }
                let (value, overflow) = total.multipliedReportingOverflow(by: factor)
                return overflow || value > Int(Int32.max) ? nil : value
            }
            if product == nil {
                throw GPUBridgeError.invalidArgument(
                    name: "launch \(name) of Swift kernel '\(context.kernel)'",
                    value: factors.map(String.init).joined(separator: " x "),
                    limit: "at most \(Int32.max) (work-item indices are Int32)")
            }
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
    ///
    /// Work-items whose global index along dimension 0 is at or past `limit` are skipped. `@GPUKernel` passes the
    /// scalar of a body that does nothing for them (`let i = item.globalID(0)` then `if i < n { ... }` as the whole
    /// rest, or `guard i < n else { return }`): with the loop bounded by `n` the compiler drops the body's own test
    /// and can vectorise the loop. Pass `nil` (the default) to run every work-item.
    ///
    /// The loops are `while` loops over `Int32` counters, not `for` over ranges of `Int32`, which measured about 1.5
    /// times slower here. A one-dimensional launch whose indices fit `Int32` takes a loop of its own, in which the
    /// global index is the loop counter.
    @inlinable public static func forEach(
        in context: CPUKernelContext, limit: Int? = nil, _ body: (WorkItem) throws -> Void
    ) throws {
        try checkSizes(context)
        let g = context.launch.groups, s = context.launch.groupSize
        let size = (x: Int32(s.x), y: Int32(s.y), z: Int32(s.z))
        let count = (x: Int32(g.x), y: Int32(g.y), z: Int32(g.z))
        let limit = Int32(clamping: limit ?? Int.max)  // no `max(0, ...)`: the loop must see `stop <= limit`
        var item = WorkItem(local: (0, 0, 0), group: (0, 0, 0), groupSize: size, groups: count)
        if g.y == 1, g.z == 1, s.y == 1, s.z == 1 {
            // One dimension; `checkSizes` keeps every index below Int32.max, so `base + size.x` cannot overflow.
            var group = Int32(context.groups.lowerBound)
            let end = Int32(context.groups.upperBound)
            while group < end {
                let base = group * size.x
                let stop = min(base + size.x, limit)
                item.group.x = group
                var global = base
                while global < stop {
                    // `global &- base` and the `&+` in `globalID` fold back to `global`.
                    item.local.x = global &- base
                    try body(item)
                    global += 1
                }
                group += 1
            }
            return
        }
        for linear in context.groups {
            item.group = (Int32(linear % g.x), Int32((linear / g.x) % g.y), Int32(linear / (g.x * g.y)))
            // Work-items at or past `limit` along x: the rest of this group's rows.
            let room = Int(limit) - Int(item.group.x) * Int(size.x)
            let stopX = Int32(clamping: min(Int(size.x), max(0, room)))
            var lz: Int32 = 0
            while lz < size.z {
                var ly: Int32 = 0
                while ly < size.y {
                    var lx: Int32 = 0
                    while lx < stopX {
                        item.local = (lx, ly, lz)
                        try body(item)
                        lx += 1
                    }
                    ly += 1
                }
                lz += 1
            }
        }
    }
}
