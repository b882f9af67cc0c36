import Dispatch
import GPUBridge
import Synchronization
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Test support: wraps a real backend and fails chosen operations, so tests can drive the pool's out-of-memory path,
/// the runtime's retries, fallback and circuit breaker against real devices. Not part of the shipping library.
///
/// Faults are deterministic: a given call number, every n-th call, every call while `always` holds the operation, or a
/// fraction of calls (`rate`) drawn from a seeded SplitMix64 stream per operation, one draw per call in call order, so
/// the set of failing call numbers is the same on every run whatever the thread interleaving. A capacity cap makes
/// `allocate` report out-of-memory once the wrapped device has handed out that many bytes through it.
///
/// Stalls (`stalls`) delay an operation instead of failing it: this is a test-only injected stall, standing in for a
/// slow driver or a busy device. Synchronous operations (allocate, copies, compile) sleep on the calling thread; a
/// launch runs on the real device, then its `Completion` is completed later from a Dispatch worker after a real wait;
/// `synchronize` sleeps (suspends) before it synchronizes.
public final class FaultInjectingBackend: DeviceBackend {
    /// The operations a fault can be injected into.
    public enum Operation: String, Sendable, Hashable, CaseIterable {
        case allocate, copy, compile, launch, synchronize, load
    }

    /// What to fail.
    public struct Plan: Sendable {
        /// Fail these 1-based call numbers of an operation.
        public var calls: [Operation: Set<Int>] = [:]
        /// Fail every n-th call of an operation.
        public var every: [Operation: Int] = [:]
        /// Fail every call of these operations.
        public var always: Set<Operation> = []
        /// Refuse allocations beyond this many outstanding bytes (driver out-of-memory).
        public var capacity: Int?
        /// Fail this fraction (0...1) of the calls of an operation, chosen by SplitMix64 seeded with `seed`.
        public var rate: [Operation: Double] = [:]
        /// Seed of the `rate` and stall draws.
        public var seed: UInt64 = 0
        /// Delay calls of an operation (test-only injected stall; see the type's documentation).
        public var stalls: [Operation: Stall] = [:]
        /// Fail these 1-based call numbers of an operation with `outOfMemory` (the driver had no memory for a module
        /// load or a launch) instead of a backend failure.
        public var outOfMemory: [Operation: Set<Int>] = [:]

        public init(
            calls: [Operation: Set<Int>] = [:], every: [Operation: Int] = [:], always: Set<Operation> = [],
            capacity: Int? = nil, rate: [Operation: Double] = [:], seed: UInt64 = 0,
            stalls: [Operation: Stall] = [:], outOfMemory: [Operation: Set<Int>] = [:]
        ) {
            self.outOfMemory = outOfMemory
            self.calls = calls
            self.every = every
            self.always = always
            self.capacity = capacity
            self.rate = rate
            self.seed = seed
            self.stalls = stalls
        }
    }

    /// A delay injected into a fraction of an operation's calls.
    public struct Stall: Sendable, Hashable {
        /// How long each stalled call is delayed.
        public var duration: Duration
        /// Fraction (0...1) of calls stalled, drawn from the seeded stream; 1 stalls every call.
        public var rate: Double

        public init(_ duration: Duration, rate: Double = 1) {
            self.duration = duration
            self.rate = rate
        }
    }

    private struct State {
        var plan: Plan
        var counts: [Operation: Int] = [:]
        var injected: [Operation: Int] = [:]
        var stalled: [Operation: Int] = [:]
        var outstanding = 0
        var peakOutstanding = 0
        var faultDraws: [Operation: SplitMix64] = [:]
        var lost: String?
        var stallDraws: [Operation: SplitMix64] = [:]

        init(plan: Plan) {
            self.plan = plan
            reseed()
        }

        /// One stream per operation and purpose, so adding a stall does not change which calls fail.
        mutating func reseed() {
            for (index, operation) in Operation.allCases.enumerated() {
                let salt = UInt64(index + 1) &* 0xA24B_AED4_963E_E407
                faultDraws[operation] = SplitMix64(seed: plan.seed ^ salt)
                stallDraws[operation] = SplitMix64(seed: plan.seed ^ salt ^ 0x5851_F42D_4C95_7F2D)
            }
        }

        /// The next draw in [0, 1) from `stream`.
        static func draw(_ stream: inout SplitMix64?) -> Double {
            guard var generator = stream else { return 1 }
            let value = Double(generator.next() >> 11) / Double(UInt64(1) << 53)
            stream = generator
            return value
        }
    }

    public let inner: any DeviceBackend
    public let info: DeviceInfo
    private let state: Mutex<State>

    /// Wraps `inner`; `ordinal` gives the wrapper its own device id (default: the inner device's).
    public init(wrapping inner: any DeviceBackend, ordinal: Int? = nil, plan: Plan = Plan()) {
        self.inner = inner
        var info = inner.info
        if let ordinal { info.id = DeviceID(backend: info.id.backend, ordinal: ordinal) }
        if let capacity = plan.capacity { info.totalMemory = capacity }
        self.info = info
        self.state = Mutex(State(plan: plan))
    }

    /// Replaces the plan (for example to make a device fail permanently, or heal it). The rate and stall streams
    /// restart from the new plan's seed; call counts go on.
    public func setPlan(_ plan: Plan) {
        state.withLock {
            $0.plan = plan
            $0.reseed()
        }
    }

    /// Faults injected so far, per operation.
    public func injected(_ operation: Operation) -> Int { state.withLock { $0.injected[operation, default: 0] } }
    /// Calls seen so far, per operation.
    public func calls(_ operation: Operation) -> Int { state.withLock { $0.counts[operation, default: 0] } }
    /// Calls delayed by an injected stall so far, per operation.
    public func stalled(_ operation: Operation) -> Int { state.withLock { $0.stalled[operation, default: 0] } }
    /// Bytes allocated through this wrapper and not freed yet.
    public var outstandingBytes: Int { state.withLock { $0.outstanding } }
    /// The most bytes that were outstanding at once.
    public var peakOutstandingBytes: Int { state.withLock { $0.peakOutstanding } }

    /// Makes the device lost, as a fault that ended its context would: `lostReason` is set and every later
    /// operation fails with `deviceLost`.
    public func lose(_ reason: String) { state.withLock { $0.lost = reason } }

    public var lostReason: String? { state.withLock { $0.lost } }

    /// Counts a call and says how it must fail (nil: it must not) and how long it must stall (nil: not at all). A
    /// failing call is not stalled.
    private func decide(_ operation: Operation) -> (fail: GPUBridgeError?, stall: Duration?) {
        let decision = state.withLock { s -> (fail: Bool, outOfMemory: Bool, lost: String?, stall: Duration?) in
            let n = s.counts[operation, default: 0] + 1
            s.counts[operation] = n
            if let lost = s.lost { return (true, false, lost, nil) }
            if s.plan.outOfMemory[operation]?.contains(n) == true {
                s.injected[operation, default: 0] += 1
                return (true, true, nil, nil)
            }
            // Both streams advance on every call, so call n's decision depends only on n and the seed.
            let faultDraw = State.draw(&s.faultDraws[operation])
            let stallDraw = State.draw(&s.stallDraws[operation])
            let fail =
                s.plan.always.contains(operation) || s.plan.calls[operation]?.contains(n) == true
                || (s.plan.every[operation].map { $0 > 0 && n % $0 == 0 } ?? false)
                || (s.plan.rate[operation].map { faultDraw < $0 } ?? false)
            if fail {
                s.injected[operation, default: 0] += 1
                return (true, false, nil, nil)
            }
            guard let stall = s.plan.stalls[operation], stall.duration > .zero, stallDraw < stall.rate else {
                return (false, false, nil, nil)
            }
            s.stalled[operation, default: 0] += 1
            return (false, false, nil, stall.duration)
        }
        guard decision.fail else { return (nil, decision.stall) }
        if let lost = decision.lost { return (.deviceLost(device: info.id.description, reason: lost), nil) }
        if decision.outOfMemory {
            return (
                .outOfMemory(
                    device: info.id.description, requested: 0, inUse: 0, cached: 0, limit: info.totalMemory,
                    detail: "out of memory injected by the test into \(operation.rawValue)"), nil
            )
        }
        return (fault(operation), nil)
    }

    /// Counts a call and says how it must fail (nil: it must not); a stalled call sleeps on the calling thread first.
    private func injectedFault(_ operation: Operation) -> GPUBridgeError? {
        let (fail, stall) = decide(operation)
        if let stall { Self.sleep(stall) }
        return fail
    }

    /// Blocks the calling thread for `duration` (synchronous operations only: a test-only injected stall).
    static func sleep(_ duration: Duration) {
        var request = timespec(
            tv_sec: Int(duration.components.seconds),
            tv_nsec: Int(duration.components.attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 { request = remaining }
    }

    func fault(_ operation: Operation) -> GPUBridgeError {
        .backendFailure(
            backend: info.id.backend.rawValue, call: "injected \(operation.rawValue) fault", code: -999,
            message: "fault injected by the test on \(info.id)")
    }

    public var counters: DeviceCounters { inner.counters }
    public func freeMemory() throws(GPUBridgeError) -> Int {
        if let capacity = state.withLock({ $0.plan.capacity }) { return capacity - state.withLock { $0.outstanding } }
        return try inner.freeMemory()
    }
    public var allocationGranularity: Int { inner.allocationGranularity }

    public func allocate(byteCount: Int) throws(GPUBridgeError) -> UInt64 {
        if let error = injectedFault(.allocate) { throw error }
        let granted = state.withLock { s -> Bool in
            if let capacity = s.plan.capacity, s.outstanding + byteCount > capacity { return false }
            s.outstanding += byteCount
            s.peakOutstanding = max(s.peakOutstanding, s.outstanding)
            return true
        }
        guard granted else {
            throw .outOfMemory(
                device: info.id.description, requested: byteCount, inUse: state.withLock { $0.outstanding },
                cached: 0, limit: info.totalMemory, detail: "capacity of the test device")
        }
        do {
            return try inner.allocate(byteCount: byteCount)
        } catch {
            state.withLock { $0.outstanding -= byteCount }
            throw error
        }
    }

    public func free(handle: UInt64, byteCount: Int) {
        state.withLock { $0.outstanding -= byteCount }
        inner.free(handle: handle, byteCount: byteCount)
    }

    public func regionRetired(_ region: DeviceRegion) { inner.regionRetired(region) }

    public func copy(from source: UnsafeRawBufferPointer, to destination: DeviceRegion) throws(GPUBridgeError) {
        if let error = injectedFault(.copy) { throw error }
        try inner.copy(from: source, to: destination)
    }
    public func copy(from source: DeviceRegion, to destination: UnsafeMutableRawBufferPointer) throws(GPUBridgeError) {
        if let error = injectedFault(.copy) { throw error }
        try inner.copy(from: source, to: destination)
    }
    public func enqueueCopy(from source: DeviceRegion, to destination: DeviceRegion) throws(GPUBridgeError)
        -> Completion
    {
        if let error = injectedFault(.copy) { throw error }
        return try inner.enqueueCopy(from: source, to: destination)
    }
    public func enqueueFill(_ destination: DeviceRegion, pattern: [UInt8]) throws(GPUBridgeError) -> Completion {
        if let error = injectedFault(.copy) { throw error }
        return try inner.enqueueFill(destination, pattern: pattern)
    }
    public func enqueueCopy(from source: HostAllocation, offset: Int, owner: any Sendable, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        if let error = injectedFault(.copy) { throw error }
        return try inner.enqueueCopy(from: source, offset: offset, owner: owner, to: destination)
    }
    public func enqueueCopy(from source: DeviceRegion, to destination: HostAllocation, offset: Int, owner: any Sendable)
        throws(GPUBridgeError) -> Completion
    {
        if let error = injectedFault(.copy) { throw error }
        return try inner.enqueueCopy(from: source, to: destination, offset: offset, owner: owner)
    }
    public func enqueueCopy(copying source: UnsafeRawBufferPointer, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        if let error = injectedFault(.copy) { throw error }
        return try inner.enqueueCopy(copying: source, to: destination)
    }
    public func allocateHost(byteCount: Int, pinned: Bool) throws(GPUBridgeError) -> HostAllocation {
        try inner.allocateHost(byteCount: byteCount, pinned: pinned)
    }
    public func freeHost(_ allocation: HostAllocation) { inner.freeHost(allocation) }

    public var languages: Set<KernelLanguage> { inner.languages }
    public var compilerVersion: String { inner.compilerVersion }
    public func compilerFlags(for options: CompileOptions) -> [String] { inner.compilerFlags(for: options) }
    public func compile(_ source: KernelSource, options: CompileOptions) throws(GPUBridgeError) -> KernelBinary {
        if let error = injectedFault(.compile) {
            guard case .backendFailure = error else { throw error }
            throw .compilationFailed(
                kernel: source.name, backend: info.id.backend.rawValue, log: "fault injected by the test")
        }
        return try inner.compile(source, options: options)
    }
    public func load(_ binary: KernelBinary, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        if let error = injectedFault(.load) { throw error }
        return FaultInjectingProgram(inner: try inner.load(binary, source: source), backend: self)
    }
    public func makeProgram(_ kernel: SwiftKernel, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        if let error = injectedFault(.compile) {
            guard case .backendFailure = error else { throw error }
            throw .compilationFailed(
                kernel: source.name, backend: info.id.backend.rawValue, log: "fault injected by the test")
        }
        return FaultInjectingProgram(inner: try inner.makeProgram(kernel, source: source), backend: self)
    }
    public func synchronize() async throws(GPUBridgeError) {
        let (fail, stall) = decide(.synchronize)
        if let fail { throw fail }
        if let stall { try? await Task.sleep(for: stall) }  // test-only injected stall
        try await inner.synchronize()
    }

    final class FaultInjectingProgram: KernelProgram {
        let inner: any KernelProgram
        let backend: FaultInjectingBackend
        init(inner: any KernelProgram, backend: FaultInjectingBackend) {
            self.inner = inner
            self.backend = backend
        }
        var entryPoint: String { inner.entryPoint }
        var parameterCount: Int? { inner.parameterCount }
        func enqueue(_ launch: Launch, arguments: [ResolvedArgument]) throws(GPUBridgeError) -> Completion {
            let (fail, stall) = backend.decide(.launch)
            if let fail { throw fail }
            let real = try inner.enqueue(launch, arguments: arguments)
            guard let stall else { return real }
            // Test-only injected stall: the kernel really runs; its completion is reported `stall` later, from a
            // Dispatch worker after a real timer wait, as a slow device's event callback would be.
            let delayed = Completion(retaining: [real])
            Task.detached {
                let result: Result<ExecutionTimings?, GPUBridgeError>
                do throws(GPUBridgeError) {
                    result = .success(try await real.wait())
                } catch {
                    result = .failure(error)
                }
                let nanoseconds =
                    Int(stall.components.seconds) * 1_000_000_000 + Int(stall.components.attoseconds / 1_000_000_000)
                DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) {
                    delayed.complete(result)
                }
            }
            return delayed
        }
    }
}
