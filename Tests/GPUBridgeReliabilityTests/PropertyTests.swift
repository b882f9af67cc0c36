import GPUBridge
import Synchronization
import Testing

/// Seeded random inputs (SplitMix64), biased towards the edges: negative, zero, one, the device limits and one past,
/// `Int32.max`, `Int.max`, `Int.min`, and values whose products overflow.
struct Inputs {
    var random: SplitMix64

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    mutating func below(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
    mutating func chance(_ p: Double) -> Bool { Double(random.next() >> 11) / Double(UInt64(1) << 53) < p }
    mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }

    /// An integer: small most of the time, else an edge or a raw 64-bit pattern.
    mutating func int(small: Int = 70, edges: [Int] = []) -> Int {
        switch below(10) {
        case 0..<6: return below(small + 3) - 2
        case 6..<9:
            return pick(
                edges + [
                    Int.min, Int.min + 1, -1, 0, 1, Int(Int32.max), Int(Int32.max) + 1, Int.max, Int.max - 1, 1 << 32,
                    1 << 62,
                ])
        default: return Int(bitPattern: UInt(random.next()))
        }
    }

    /// An offset for entry points whose count defaults to "the rest" (count nil): any value, `Int.min` included.
    mutating func defaultedOffset(small: Int) -> Int { int(small: small) }
}

/// Counts the inputs each property tried, for docs/RELIABILITY.md.
final class Tried: Sendable {
    private let counts = Mutex<[String: (accepted: Int, rejected: Int)]>([:])
    func record(_ name: String, accepted: Bool) {
        counts.withLock { c in
            var entry = c[name, default: (0, 0)]
            if accepted { entry.accepted += 1 } else { entry.rejected += 1 }
            c[name] = entry
        }
    }
    var summary: String {
        counts.withLock { c in
            c.keys.sorted().map { "\($0): \(c[$0]!.accepted) accepted, \(c[$0]!.rejected) rejected" }.joined(
                separator: "; ")
        }
    }
}

/// Property-based checks of argument validation and launch-shape checking. Every random input must either be accepted
/// and then behave exactly like a host model on the CPU backend, or throw a `GPUBridgeError`; acceptance must match an
/// independent statement of the rules, and nothing may crash. Bounded iterations, fixed seeds: a few seconds, the same
/// inputs every run.
@Suite("Property-based: launch shapes, views, copies, arguments")
struct PropertyTests {
    static let iterations = 2_000

    /// Marks every work-item's global (x, y, z) once; the host checks each was run exactly once.
    static let markKernel = KernelSource(
        name: "mark",
        parameters: [
            .buffer("marks", Int32.self, extent: .globalSize), .scalar(name: "gx", type: .int64),
            .scalar(name: "gy", type: .int64),
        ]
    ) { context in
        let marks = try context.buffer(0, as: Int32.self)
        let gx = try context.integer(1), gy = try context.integer(2)
        context.forEachWorkItem { x, y, z in marks[x + gx * (y + gy * z)] += 1 }
    }

    static func extent(_ inputs: inout Inputs, edges: [Int]) -> Extent3 {
        let a = inputs.int(small: 40, edges: edges), b = inputs.int(small: 6, edges: edges),
            c = inputs.int(small: 4, edges: edges)
        switch inputs.below(3) {
        case 0: return Extent3(a)
        case 1: return Extent3(a, b)
        default: return Extent3(a, b, c)
        }
    }

    /// The launch rules, restated independently of `Launch.validate`.
    static func isValid(_ launch: Launch, on info: DeviceInfo) -> Bool {
        for d in 0..<3 {
            let g = launch.groups.components[d], s = launch.groupSize.components[d]
            let gLimit = d < info.maxGroups.count ? info.maxGroups[d] : 1,
                sLimit = d < info.maxGroupSize.count ? info.maxGroupSize[d] : 1
            if g < 1 || g > gLimit || s < 1 || s > sLimit { return false }
        }
        let (xy, o1) = launch.groupSize.x.multipliedReportingOverflow(by: launch.groupSize.y)
        let (items, o2) = xy.multipliedReportingOverflow(by: launch.groupSize.z)
        if o1 || o2 || items > info.maxGroupItems { return false }
        var total = 1
        for d in 0..<3 {
            let (n, o) = launch.groups.components[d].multipliedReportingOverflow(by: launch.groupSize.components[d])
            if o { return false }
            let (t, o3) = total.multipliedReportingOverflow(by: n)
            if o3 { return false }
            total = t
        }
        return launch.sharedMemoryBytes >= 0 && launch.sharedMemoryBytes <= info.capabilities.sharedMemoryPerGroup
    }

    @Test(
        "launch shapes: validate accepts exactly the shapes within the device's limits; accepted small ones run every work-item once"
    )
    func launchShapes() async throws {
        let device = try Device(backend: CPUBackend())
        let baseline = Baseline(device)
        let kernel = try device.compile(Self.markKernel)
        let info = device.info
        var inputs = Inputs(seed: 0x6C61_756E_6368)
        let tried = Tried()
        var ran = 0
        let edges = [1023, 1024, 1025, 65535, 65536] + info.maxGroups + info.maxGroupSize
        for _ in 0..<Self.iterations {
            var launch = Launch(
                groups: Self.extent(&inputs, edges: edges), groupSize: Self.extent(&inputs, edges: edges))
            if inputs.chance(0.1) { launch.sharedMemoryBytes = inputs.int(small: 4) }
            let expected = Self.isValid(launch, on: info)
            var accepted = true
            do throws(GPUBridgeError) {
                try launch.validate(for: info)
            } catch {
                accepted = false
                guard case let .invalidLaunch(name, value, limit) = error, !name.isEmpty, !value.isEmpty, !limit.isEmpty
                else {
                    Issue.record("\(launch): unclear error \(error)")
                    continue
                }
            }
            tried.record("Launch.validate", accepted: accepted)
            #expect(
                accepted == expected,
                "\(launch): validate \(accepted ? "accepted" : "rejected"), the rules say \(expected)")
            guard accepted, let global = launch.globalSize, let total = global.product, total <= 1 << 15 else {
                continue
            }
            // Small enough to run: every work-item exactly once, and nothing outside the grid.
            let marks = try device.makeBuffer(copying: [Int32](repeating: 0, count: total))
            try await device.launch(
                kernel, launch, arguments: [.buffer(marks), .int64(Int64(global.x)), .int64(Int64(global.y))])
            let got = try marks.toArray()
            #expect(
                got.allSatisfy { $0 == 1 }, "\(launch): \(got.filter { $0 != 1 }.count) work-items not run exactly once"
            )
            ran += 1
        }
        #expect(ran > 100, "only \(ran) accepted launches were small enough to run")

        // Launch.covering: whatever the count and group size, the launch is rejected or covers the count with less than
        // one group to spare; counts up to Int.max included.
        for _ in 0..<Self.iterations {
            let groupSize = inputs.int(small: 1100, edges: [1024, 1025])
            let count = inputs.int(small: 100_000)
            let launch = Launch.covering(count, groupSize: groupSize)
            let valid = (try? launch.validate(for: info)) != nil
            tried.record("Launch.covering", accepted: valid)
            if valid {
                let covered = launch.groups.x * launch.groupSize.x
                #expect(covered >= count && covered - count < groupSize, "covering(\(count), \(groupSize)) = \(launch)")
            } else {
                #expect(
                    count <= 0 || groupSize <= 0 || groupSize > 1024 || count / groupSize >= Int(Int32.max),
                    "covering(\(count), \(groupSize)) rejected")
            }
        }
        print("reliability: property: \(tried.summary); \(ran) launches run")
        await baseline.check()
    }

    @Test("views, copies, reads and fills with random offsets and counts behave like a host array or throw")
    func viewsAndCopies() async throws {
        let device = try Device(backend: CPUBackend())
        let other = try Device(backend: CPUBackend(ordinal: 1))
        let baseline = Baseline(device)
        var inputs = Inputs(seed: 0x7669_6577)
        let tried = Tried()
        func inRange(_ offset: Int, _ length: Int, _ limit: Int) -> Bool {
            let (end, overflow) = offset.addingReportingOverflow(length)
            return offset >= 0 && length >= 0 && !overflow && end <= limit
        }
        do {
            for _ in 0..<Self.iterations {
                let n = 1 + inputs.below(64)
                var model = (0..<n).map { Int32($0) }
                let buffer = try device.makeBuffer(copying: model)
                let explicit = inputs.chance(0.6)
                switch inputs.below(7) {
                case 0:  // view
                    let offset = inputs.int(small: n), count = inputs.int(small: n)
                    let valid = inRange(offset, count, n) && count >= 1
                    let view = try? buffer.view(offset: offset, count: count)
                    tried.record("Buffer.view", accepted: view != nil)
                    #expect((view != nil) == valid, "view(\(offset), \(count)) of \(n)")
                    if let view { #expect(try view.toArray() == Array(model[offset..<offset + count])) }
                case 1:  // host array -> buffer
                    let source = (0..<inputs.below(80)).map { Int32(1000 + $0) }
                    let sourceOffset =
                        explicit ? inputs.int(small: source.count) : inputs.defaultedOffset(small: source.count)
                    let offset = inputs.int(small: n)
                    let count: Int? = explicit ? inputs.int(small: n) : nil
                    let length = count ?? rest(source.count, sourceOffset)
                    let valid = inRange(sourceOffset, length, source.count) && inRange(offset, length, n)
                    let ok =
                        (try? buffer.copy(from: source, sourceOffset: sourceOffset, toOffset: offset, count: count))
                        != nil
                    tried.record("Buffer.copy(from: [Element])", accepted: ok)
                    #expect(
                        ok == valid,
                        "copy(from: \(source.count) elements, sourceOffset: \(sourceOffset), toOffset: \(offset), count: \(String(describing: count))) into \(n)"
                    )
                    if ok, length > 0 {
                        model.replaceSubrange(
                            offset..<offset + length, with: source[sourceOffset..<sourceOffset + length])
                    }
                case 2:  // buffer -> host array
                    var destination = [Int32](repeating: -1, count: inputs.below(80))
                    var expected = destination
                    let destinationOffset =
                        explicit
                        ? inputs.int(small: destination.count) : inputs.defaultedOffset(small: destination.count)
                    let offset = explicit ? inputs.int(small: n) : inputs.defaultedOffset(small: n)
                    let count: Int? = explicit ? inputs.int(small: n) : nil
                    let length = count ?? min(rest(destination.count, destinationOffset), rest(n, offset))
                    let valid = inRange(destinationOffset, length, destination.count) && inRange(offset, length, n)
                    let ok =
                        (try? buffer.copy(
                            to: &destination, destinationOffset: destinationOffset, fromOffset: offset, count: count))
                        != nil
                    tried.record("Buffer.copy(to: inout [Element])", accepted: ok)
                    #expect(
                        ok == valid,
                        "copy(to: \(expected.count), destinationOffset: \(destinationOffset), fromOffset: \(offset), count: \(String(describing: count))) from \(n)"
                    )
                    if ok, length > 0 {
                        expected.replaceSubrange(
                            destinationOffset..<destinationOffset + length, with: model[offset..<offset + length])
                    }
                    #expect(destination == expected)
                case 3:  // read into a new array
                    let offset = explicit ? inputs.int(small: n) : inputs.defaultedOffset(small: n)
                    let count: Int? = explicit ? inputs.int(small: n) : nil
                    let length = count ?? rest(n, offset)
                    let got = try? buffer.toArray(offset: offset, count: count)
                    tried.record("Buffer.toArray", accepted: got != nil)
                    #expect(
                        (got != nil) == inRange(offset, length, n),
                        "toArray(offset: \(offset), count: \(String(describing: count))) of \(n)")
                    if let got { #expect(got == Array(model[offset..<offset + length])) }
                case 4:  // device -> device, sometimes from another device
                    let m = 1 + inputs.below(64)
                    let foreign = inputs.chance(0.1)
                    let source = try (foreign ? other : device).makeBuffer(copying: (0..<m).map { Int32(500 + $0) })
                    let sourceOffset = explicit ? inputs.int(small: m) : inputs.defaultedOffset(small: m)
                    let offset = explicit ? inputs.int(small: n) : inputs.defaultedOffset(small: n)
                    let count: Int? = explicit ? inputs.int(small: n) : nil
                    let length = count ?? min(rest(m, sourceOffset), rest(n, offset))
                    let valid = !foreign && inRange(sourceOffset, length, m) && inRange(offset, length, n)
                    var ok = true
                    do throws(GPUBridgeError) {
                        try await buffer.copy(from: source, sourceOffset: sourceOffset, toOffset: offset, count: count)
                    } catch {
                        ok = false
                        if foreign, inRange(sourceOffset, length, m), inRange(offset, length, n), length > 0 {
                            guard case .wrongDevice = error else { Issue.record("foreign copy: \(error)"); break }
                        }
                    }
                    tried.record("Buffer.copy(from: Buffer)", accepted: ok)
                    // A zero-length copy from another device does nothing and may be accepted.
                    #expect(
                        ok == valid || (foreign && ok && length == 0),
                        "copy(from: \(m), sourceOffset: \(sourceOffset), toOffset: \(offset), count: \(String(describing: count))) into \(n), foreign \(foreign)"
                    )
                    if ok, !foreign, length > 0 {
                        model.replaceSubrange(
                            offset..<offset + length,
                            with: (sourceOffset..<sourceOffset + length).map { Int32(500 + $0) })
                    }
                case 5:  // fill
                    let offset = explicit ? inputs.int(small: n) : inputs.defaultedOffset(small: n)
                    let count: Int? = explicit ? inputs.int(small: n) : nil
                    let length = count ?? rest(n, offset)
                    var ok = true
                    do throws(GPUBridgeError) { try await buffer.fill(7, offset: offset, count: count) } catch {
                        ok = false
                    }
                    tried.record("Buffer.fill", accepted: ok)
                    #expect(
                        ok == inRange(offset, length, n),
                        "fill(offset: \(offset), count: \(String(describing: count))) of \(n)")
                    if ok, length > 0 {
                        model.replaceSubrange(offset..<offset + length, with: repeatElement(7, count: length))
                    }
                default:  // allocation sizes
                    // Either small or far past any memory (refused before anything is allocated); nothing in between is asked for.
                    let count =
                        inputs.chance(0.5)
                        ? inputs.below(1003) - 2
                        : inputs.pick([Int.min, -1, 0, Int.max, Int.max / 4, Int.max / 4 + 1, 1 << 61, 1 << 50])
                    let made = try? device.makeBuffer(of: Int32.self, count: count)
                    tried.record("Device.makeBuffer", accepted: made != nil)
                    if count >= 1, count <= 1000 {
                        #expect(made?.count == count)
                    } else if count < 1 || count > 1 << 40 {
                        #expect(made == nil, "makeBuffer(count: \(count))")
                    }
                }
                #expect(try buffer.toArray() == model)
            }
        }
        print("reliability: property: \(tried.summary)")
        await baseline.check()
    }

    @Test(
        "argument lists: random kinds, types, devices and counts are accepted exactly when they match the declaration")
    func argumentLists() async throws {
        let device = try Device(backend: CPUBackend())
        let other = try Device(backend: CPUBackend(ordinal: 1))
        let baseline = Baseline(device)
        let kernel = try device.compile(
            KernelSource(
                name: "add_constant",
                parameters: [
                    .buffer("data", Float.self, extent: .argument(2)), .scalar(name: "k", type: .float32),
                    .scalar(name: "n", type: .int32),
                ]
            ) { context in
                let data = try context.buffer(0, as: Float.self)
                let k = try context.float(1)
                let n = try context.integer(2)
                for i in context.items where i < n && i < data.count { data[i] += k }
            })
        var inputs = Inputs(seed: 0x6172_6773)
        let tried = Tried()
        do {
            for _ in 0..<Self.iterations {
                let size = 1 + inputs.below(128)
                let data = try device.makeBuffer(copying: [Float](repeating: 1, count: size))
                let foreign = try other.makeBuffer(of: Float.self, count: size)
                // Argument i is right with probability 0.8, else a random other kind.
                var arguments: [KernelArgument] = []
                var valid = true
                let count = inputs.chance(0.9) ? 3 : inputs.below(6)
                if count != 3 { valid = false }
                var n: Int32 = 0
                for i in 0..<count {
                    let right = inputs.chance(0.8)
                    switch (i, right) {
                    case (0, true): arguments.append(.buffer(data))
                    case (1, true): arguments.append(.float(2))
                    case (2, true):
                        n = Int32(
                            truncatingIfNeeded: inputs.int(small: size + 5, edges: [size, size + 1, Int(Int32.min)]))
                        arguments.append(.int32(n))
                        if Int(n) > size { valid = false }
                    default:
                        valid = false
                        arguments.append(
                            inputs.pick([
                                KernelArgument.buffer(foreign), .buffer(data), .double(1), .int64(3), .uint32(4),
                                .int32(-1), .float(1),
                            ]))
                        // A wrong pick may still happen to be right: restate the rule for what was picked.
                        if i < 3, Self.matches(arguments[i], position: i, device: device, size: size) {
                            if i == 2, case let .scalar(.int32(v)) = arguments[i] { n = v }
                            valid =
                                count == 3
                                && arguments.indices.allSatisfy {
                                    Self.matches(arguments[$0], position: $0, device: device, size: size)
                                }
                        }
                    }
                }
                var k: Float = 0
                if count == 3,
                    arguments.indices.allSatisfy({
                        Self.matches(arguments[$0], position: $0, device: device, size: size)
                    })
                {
                    if case let .scalar(.int32(v)) = arguments[2] { n = v; valid = Int(v) <= size }
                    if case let .scalar(.float32(v)) = arguments[1] { k = v }
                } else {
                    valid = false
                }
                let launch = Launch.covering(size + inputs.below(300), groupSize: inputs.pick([1, 32, 64, 256]))
                var ok = true
                do throws(GPUBridgeError) {
                    try await device.launch(kernel, launch, arguments: arguments)
                } catch {
                    ok = false
                    switch error {
                    case .argumentMismatch, .wrongDevice: break
                    default: Issue.record("unexpected error kind: \(error)")
                    }
                }
                tried.record("Device.launch arguments", accepted: ok)
                #expect(ok == valid, "\(arguments.map { "\($0)" }) with size \(size)")
                let got = try data.toArray()
                let reach = ok ? max(0, min(Int(n), size)) : 0
                #expect(got == (0..<size).map { $0 < reach ? 1 + k : 1 }, "\(arguments.map { "\($0)" })")
            }
        }
        print("reliability: property: \(tried.summary)")
        await baseline.check()
    }

    static func matches(_ argument: KernelArgument, position: Int, device: Device, size: Int) -> Bool {
        switch (position, argument) {
        case let (0, .buffer(buffer)): return buffer.device === device
        case (1, .scalar(.float32)): return true
        case (2, .scalar(.int32)): return true
        default: return false
        }
    }
}

/// The model of a defaulted count: what is left of `total` after `offset`, or 0 when the offset is outside
/// `0...total` (the call then fails its range check).
func rest(_ total: Int, _ offset: Int) -> Int { offset >= 0 && offset <= total ? total - offset : 0 }
