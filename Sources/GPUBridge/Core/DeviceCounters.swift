import Synchronization

/// Counts of what a backend actually asked its driver to do. Lock-free; any thread may read or bump them.
///
/// Backends bump these inside their native wrappers, so a test can prove, for example, that a launch over resident
/// buffers allocates nothing and copies nothing.
public final class DeviceCounters: Sendable {
    private let _allocations = Atomic<Int>(0)
    private let _frees = Atomic<Int>(0)
    private let _copies = Atomic<Int>(0)
    private let _bytesCopied = Atomic<Int>(0)
    private let _launches = Atomic<Int>(0)
    private let _compiles = Atomic<Int>(0)
    private let _launchesAwaited = Atomic<Int>(0)
    private let _launchNanoseconds = Atomic<Int>(0)

    public init() {}

    /// Native device allocations made (pool misses that reached the driver, sub-buffers, staging...).
    public var allocations: Int { _allocations.load(ordering: .relaxed) }
    /// Native device allocations released.
    public var frees: Int { _frees.load(ordering: .relaxed) }
    /// Copies issued (host->device, device->host, device->device, fills).
    public var copies: Int { _copies.load(ordering: .relaxed) }
    /// Bytes moved by those copies.
    public var bytesCopied: Int { _bytesCopied.load(ordering: .relaxed) }
    /// Kernel launches issued.
    public var launches: Int { _launches.load(ordering: .relaxed) }
    /// Front-end compilations run (cache misses).
    public var compiles: Int { _compiles.load(ordering: .relaxed) }
    /// Launches awaited to their end through `Device.launch` (those enqueued and waited on by the caller are not).
    public var launchesAwaited: Int { _launchesAwaited.load(ordering: .relaxed) }
    /// Their total host time, enqueue to completion, in nanoseconds: the mean launch latency over an interval is the
    /// change of this over the change of `launchesAwaited`.
    public var launchNanoseconds: Int { _launchNanoseconds.load(ordering: .relaxed) }

    public func recordAllocation() { _allocations.add(1, ordering: .relaxed) }
    public func recordFree() { _frees.add(1, ordering: .relaxed) }
    public func recordCopy(bytes: Int) {
        _copies.add(1, ordering: .relaxed)
        _bytesCopied.add(bytes, ordering: .relaxed)
    }
    public func recordLaunch() { _launches.add(1, ordering: .relaxed) }
    public func recordCompile() { _compiles.add(1, ordering: .relaxed) }
    public func recordLaunchAwaited(nanoseconds: Int) {
        _launchesAwaited.add(1, ordering: .relaxed)
        _launchNanoseconds.add(max(0, nanoseconds), ordering: .relaxed)
    }

    /// A copy of the current values.
    public var snapshot: Snapshot {
        Snapshot(
            allocations: allocations, frees: frees, copies: copies, bytesCopied: bytesCopied,
            launches: launches, compiles: compiles, launchesAwaited: launchesAwaited,
            launchNanoseconds: launchNanoseconds)
    }

    /// The counters at one moment.
    public struct Snapshot: Sendable, Hashable, Codable {
        public var allocations: Int
        public var frees: Int
        public var copies: Int
        public var bytesCopied: Int
        public var launches: Int
        public var compiles: Int
        public var launchesAwaited: Int
        public var launchNanoseconds: Int
    }
}
