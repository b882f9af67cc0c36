import GPUBridge
import Synchronization

/// Test support: wraps a real backend and fails chosen operations, so tests can drive the pool's out-of-memory path,
/// the runtime's retries, fallback and circuit breaker against real devices. Not part of the shipping library.
///
/// Faults are deterministic: a given call number, every n-th call, or every call while `failing` is set. A capacity cap
/// makes `allocate` report out-of-memory once the wrapped device has handed out that many bytes through it.
public final class FaultInjectingBackend: DeviceBackend {
    /// The operations a fault can be injected into.
    public enum Operation: String, Sendable, Hashable, CaseIterable {
        case allocate, copy, compile, launch, synchronize
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

        public init(calls: [Operation: Set<Int>] = [:], every: [Operation: Int] = [:], always: Set<Operation> = [],
                    capacity: Int? = nil) {
            self.calls = calls
            self.every = every
            self.always = always
            self.capacity = capacity
        }
    }

    private struct State {
        var plan: Plan
        var counts: [Operation: Int] = [:]
        var injected: [Operation: Int] = [:]
        var outstanding = 0
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

    /// Replaces the plan (for example to make a device fail permanently, or heal it).
    public func setPlan(_ plan: Plan) { state.withLock { $0.plan = plan } }

    /// Faults injected so far, per operation.
    public func injected(_ operation: Operation) -> Int { state.withLock { $0.injected[operation, default: 0] } }
    /// Calls seen so far, per operation.
    public func calls(_ operation: Operation) -> Int { state.withLock { $0.counts[operation, default: 0] } }

    /// Counts a call and says whether it must fail.
    private func shouldFail(_ operation: Operation) -> Bool {
        state.withLock { s in
            let n = s.counts[operation, default: 0] + 1
            s.counts[operation] = n
            let fail = s.plan.always.contains(operation) || s.plan.calls[operation]?.contains(n) == true
                || (s.plan.every[operation].map { $0 > 0 && n % $0 == 0 } ?? false)
            if fail { s.injected[operation, default: 0] += 1 }
            return fail
        }
    }

    func fault(_ operation: Operation) -> GPUBridgeError {
        .backendFailure(backend: info.id.backend.rawValue, call: "injected \(operation.rawValue) fault", code: -999,
                        message: "fault injected by the test on \(info.id)")
    }

    public var counters: DeviceCounters { inner.counters }
    public func freeMemory() throws(GPUBridgeError) -> Int {
        if let capacity = state.withLock({ $0.plan.capacity }) { return capacity - state.withLock { $0.outstanding } }
        return try inner.freeMemory()
    }
    public var allocationGranularity: Int { inner.allocationGranularity }

    public func allocate(byteCount: Int) throws(GPUBridgeError) -> UInt64 {
        if shouldFail(.allocate) { throw fault(.allocate) }
        let granted = state.withLock { s -> Bool in
            if let capacity = s.plan.capacity, s.outstanding + byteCount > capacity { return false }
            s.outstanding += byteCount
            return true
        }
        guard granted else {
            throw .outOfMemory(device: info.id.description, requested: byteCount, inUse: state.withLock { $0.outstanding },
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
        if shouldFail(.copy) { throw fault(.copy) }
        try inner.copy(from: source, to: destination)
    }
    public func copy(from source: DeviceRegion, to destination: UnsafeMutableRawBufferPointer) throws(GPUBridgeError) {
        if shouldFail(.copy) { throw fault(.copy) }
        try inner.copy(from: source, to: destination)
    }
    public func enqueueCopy(from source: DeviceRegion, to destination: DeviceRegion) throws(GPUBridgeError) -> Completion {
        if shouldFail(.copy) { throw fault(.copy) }
        return try inner.enqueueCopy(from: source, to: destination)
    }
    public func enqueueFill(_ destination: DeviceRegion, pattern: [UInt8]) throws(GPUBridgeError) -> Completion {
        if shouldFail(.copy) { throw fault(.copy) }
        return try inner.enqueueFill(destination, pattern: pattern)
    }
    public func enqueueCopy(from source: HostAllocation, offset: Int, owner: any Sendable, to destination: DeviceRegion) throws(GPUBridgeError) -> Completion {
        if shouldFail(.copy) { throw fault(.copy) }
        return try inner.enqueueCopy(from: source, offset: offset, owner: owner, to: destination)
    }
    public func enqueueCopy(from source: DeviceRegion, to destination: HostAllocation, offset: Int, owner: any Sendable) throws(GPUBridgeError) -> Completion {
        if shouldFail(.copy) { throw fault(.copy) }
        return try inner.enqueueCopy(from: source, to: destination, offset: offset, owner: owner)
    }
    public func allocateHost(byteCount: Int, pinned: Bool) throws(GPUBridgeError) -> HostAllocation {
        try inner.allocateHost(byteCount: byteCount, pinned: pinned)
    }
    public func freeHost(_ allocation: HostAllocation) { inner.freeHost(allocation) }

    public var languages: Set<KernelLanguage> { inner.languages }
    public var compilerVersion: String { inner.compilerVersion }
    public func compilerFlags(for options: CompileOptions) -> [String] { inner.compilerFlags(for: options) }
    public func compile(_ source: KernelSource, options: CompileOptions) throws(GPUBridgeError) -> KernelBinary {
        if shouldFail(.compile) {
            throw .compilationFailed(kernel: source.name, backend: info.id.backend.rawValue, log: "fault injected by the test")
        }
        return try inner.compile(source, options: options)
    }
    public func load(_ binary: KernelBinary, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        FaultInjectingProgram(inner: try inner.load(binary, source: source), backend: self)
    }
    public func makeProgram(_ kernel: SwiftKernel, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        if shouldFail(.compile) {
            throw .compilationFailed(kernel: source.name, backend: info.id.backend.rawValue, log: "fault injected by the test")
        }
        return FaultInjectingProgram(inner: try inner.makeProgram(kernel, source: source), backend: self)
    }
    public func synchronize() async throws(GPUBridgeError) {
        if shouldFail(.synchronize) { throw fault(.synchronize) }
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
            if backend.shouldFail(.launch) { throw backend.fault(.launch) }
            return try inner.enqueue(launch, arguments: arguments)
        }
    }
}
