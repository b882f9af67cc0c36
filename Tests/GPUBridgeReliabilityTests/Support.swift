import GPUBridge
import GPUBridgeTestSupport
import GPUBridgeOpenCL
import Synchronization
import Testing

/// Discovered once per process: the OpenCL devices (PoCL in CI, installed by scripts/test).
enum Machine {
    static let openCL: [any DeviceBackend] = OpenCLBackendProvider().discover().devices
    static var hasOpenCL: Bool { !openCL.isEmpty }
}

/// Bridge options without an on-disk kernel cache (tests must not share state through the file system).
func options(_ configure: (inout BridgeOptions) -> Void = { _ in }) -> BridgeOptions {
    var options = BridgeOptions()
    options.cacheDirectory = nil
    options.backendOrder = [.cpu]
    configure(&options)
    return options
}

/// Checks an error names the argument, shows the value and states the limit (the three parts of every caller error).
func expectNames(
    _ error: GPUBridgeError?, argument: String, value: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let error else { return }  // bridgeError already recorded the issue
    let text = error.description
    #expect(text.contains(argument), "error does not name '\(argument)': \(text)", sourceLocation: sourceLocation)
    if let value {
        #expect(text.contains(value), "error does not show the value \(value): \(text)", sourceLocation: sourceLocation)
    }
    switch error {
    case let .invalidArgument(_, _, limit), let .invalidLaunch(_, _, limit):
        #expect(!limit.isEmpty, "error states no limit: \(text)", sourceLocation: sourceLocation)
    default:
        break
    }
}

/// Polls `condition` until it holds or `timeout` passes (buffers held by a completion are released on a worker).
func eventually(timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return try await condition()
}

/// A device's pool and backend counters at the start of a test, checked again at its end.
struct Baseline {
    let device: Device
    let pool: BufferPool.Statistics
    let counters: DeviceCounters.Snapshot

    init(_ device: Device) {
        self.device = device
        pool = device.pool.statistics
        counters = device.counters.snapshot
    }

    /// Waits for in-use bytes and blocks to return to the baseline; then, where the test owns the backend (no other
    /// pool allocates through it), trims the pool and checks every native allocation made since was freed.
    func check(ownsBackend: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) async {
        let pool = device.pool
        let back = await eventually {
            pool.statistics.bytesInUse == self.pool.bytesInUse && pool.statistics.blocksInUse == self.pool.blocksInUse
        }
        let now = pool.statistics
        #expect(
            back,
            "\(device.id): \(now.bytesInUse) bytes in \(now.blocksInUse) blocks in use, baseline \(self.pool.bytesInUse) in \(self.pool.blocksInUse)",
            sourceLocation: sourceLocation)
        guard ownsBackend else { return }
        // After a trim the pool holds only segments with blocks in use; every other native allocation made since the
        // baseline must have been freed: live native allocations == segments still held.
        pool.trim()
        let counters = device.counters.snapshot, after = pool.statistics
        #expect(
            counters.allocations - counters.frees == after.segments,
            "\(device.id): \(counters.allocations) native allocations, \(counters.frees) frees, \(after.segments) segments held after trim",
            sourceLocation: sourceLocation)
        #expect(
            after.segments <= self.pool.segments,
            "\(device.id): \(after.segments) segments after trim, \(self.pool.segments) at the baseline",
            sourceLocation: sourceLocation)
    }
}

/// Baselines for every device of a bridge; `check` checks them all.
struct Baselines {
    let all: [Baseline]
    init(_ devices: [Device]) { all = devices.map(Baseline.init) }
    init(_ bridge: Bridge) { self.init(bridge.devices) }
    func check(ownsBackends: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) async {
        for baseline in all { await baseline.check(ownsBackend: ownsBackends, sourceLocation: sourceLocation) }
    }
}

/// Counts per key how many times something happened, from any task.
final class Tally: Sendable {
    private let counts: Mutex<[Int: Int]> = Mutex([:])
    func record(_ key: Int) { counts.withLock { $0[key, default: 0] += 1 } }
    var snapshot: [Int: Int] { counts.withLock { $0 } }
}

/// Runs `body` and fails the test (instead of hanging) if it takes longer than `limit`: a deadlock shows as a failure.
func withDeadline<T: Sendable>(
    _ limit: Duration, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        if first == nil { Issue.record("\(what) did not finish within \(limit)", sourceLocation: sourceLocation) }
        return first
    }
}
