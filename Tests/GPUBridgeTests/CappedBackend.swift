import GPUBridge
import Synchronization

/// A test backend: the real CPU backend with a hard cap on the bytes it will hand out, so the pool's reaction to a
/// driver out-of-memory can be tested. Everything else is the CPU backend's own behaviour.
final class CappedBackend: DeviceBackend {
    let inner: CPUBackend
    let capacity: Int
    private let outstanding = Mutex(0)

    init(capacity: Int) {
        self.inner = CPUBackend(ordinal: 7)
        self.capacity = capacity
    }

    var info: DeviceInfo {
        var info = inner.info
        info.totalMemory = capacity
        return info
    }
    var counters: DeviceCounters { inner.counters }
    func freeMemory() throws(GPUBridgeError) -> Int { capacity - outstanding.withLock { $0 } }
    var allocationGranularity: Int { inner.allocationGranularity }

    func allocate(byteCount: Int) throws(GPUBridgeError) -> UInt64 {
        let granted = outstanding.withLock { used -> Bool in
            guard used + byteCount <= capacity else { return false }
            used += byteCount
            return true
        }
        guard granted else {
            throw .outOfMemory(device: "capped", requested: byteCount, inUse: outstanding.withLock { $0 }, cached: 0,
                               limit: capacity, detail: "capped test device")
        }
        return try inner.allocate(byteCount: byteCount)
    }

    func free(handle: UInt64, byteCount: Int) {
        outstanding.withLock { $0 -= byteCount }
        inner.free(handle: handle, byteCount: byteCount)
    }

    func copy(from source: UnsafeRawBufferPointer, to destination: DeviceRegion) throws(GPUBridgeError) {
        try inner.copy(from: source, to: destination)
    }
    func copy(from source: DeviceRegion, to destination: UnsafeMutableRawBufferPointer) throws(GPUBridgeError) {
        try inner.copy(from: source, to: destination)
    }
    func enqueueCopy(from source: DeviceRegion, to destination: DeviceRegion) throws(GPUBridgeError) -> Completion {
        try inner.enqueueCopy(from: source, to: destination)
    }
    func enqueueFill(_ destination: DeviceRegion, pattern: [UInt8]) throws(GPUBridgeError) -> Completion {
        try inner.enqueueFill(destination, pattern: pattern)
    }
    func enqueueCopy(from source: HostAllocation, offset: Int, owner: any Sendable, to destination: DeviceRegion) throws(GPUBridgeError) -> Completion {
        try inner.enqueueCopy(from: source, offset: offset, owner: owner, to: destination)
    }
    func enqueueCopy(from source: DeviceRegion, to destination: HostAllocation, offset: Int, owner: any Sendable) throws(GPUBridgeError) -> Completion {
        try inner.enqueueCopy(from: source, to: destination, offset: offset, owner: owner)
    }
    func allocateHost(byteCount: Int, pinned: Bool) throws(GPUBridgeError) -> HostAllocation {
        try inner.allocateHost(byteCount: byteCount, pinned: pinned)
    }
    func freeHost(_ allocation: HostAllocation) { inner.freeHost(allocation) }
    var languages: Set<KernelLanguage> { inner.languages }
    var compilerVersion: String { inner.compilerVersion }
    func compilerFlags(for options: CompileOptions) -> [String] { inner.compilerFlags(for: options) }
    func compile(_ source: KernelSource, options: CompileOptions) throws(GPUBridgeError) -> KernelBinary {
        try inner.compile(source, options: options)
    }
    func load(_ binary: KernelBinary, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        try inner.load(binary, source: source)
    }
    func makeProgram(_ kernel: SwiftKernel, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        try inner.makeProgram(kernel, source: source)
    }
    func synchronize() async throws(GPUBridgeError) { try await inner.synchronize() }
}
