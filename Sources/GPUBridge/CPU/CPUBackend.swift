import Dispatch
import Glibc
import Synchronization

/// The pure-Swift backend: device memory is 64-byte-aligned host memory, kernels are Swift functions, and a launch
/// is split across the host's cores. Always available.
///
/// Execution contract (the same as CUDA's streams and OpenCL's in-order queues): launches, copies and fills run in
/// the order they were enqueued, on one `CPUCommandQueue` per device; a synchronous copy runs after everything enqueued
/// before it; `synchronize()` returns when every command enqueued before it has ended. Small commands run on the
/// calling thread when the queue is idle; the rest run on the queue's worker.
///
/// Thread safety: every method may be called from any thread. Ownership: `Device` owns its backend; queued commands
/// keep what they touch alive (the `Device` retains buffers, the backend retains host memory owners).
public final class CPUBackend: DeviceBackend {
    public let info: DeviceInfo
    public let counters = DeviceCounters()
    /// Host threads a large launch is split across. A `threaded` kernel's library picks its own: `matmul` on a
    /// multi-threaded OpenBLAS uses OpenBLAS's thread count (`OPENBLAS_NUM_THREADS`), not this.
    public let cores: Int
    /// Launches with at most this many work-items run on the calling thread when the queue is idle (spreading them
    /// costs more than it saves); larger ones run on the queue's worker, split across the cores.
    public static let inlineWorkItems = 1 << 15
    /// Copies and fills of at most this many bytes run on the calling thread when the queue is idle.
    public static let inlineBytes = 1 << 20
    /// Launches of a `perByte` kernel whose buffer arguments hold at most this many bytes run in one chunk on the
    /// calling thread when the queue is idle. Measured on a 2-core VM: the hand-off to the workers and back costs
    /// about 40 to 50 µs, and one core reads 2 MiB in about 35 µs from its cache and 100 µs from memory, where two
    /// cores after the hand-off take about the same (docs/PERFORMANCE.md, "Small launches on the calling thread").
    public static let inlinePassBytes = 2 << 20
    /// The device's in-order queue.
    let queue: CPUCommandQueue
    /// Alignment of every allocation, in bytes (a cache line, and enough for any SIMD type).
    public static let alignment = 64

    /// A CPU device. `ordinal` tells several CPU devices apart (tests use two); `cores` defaults to all online cores.
    public init(ordinal: Int = 0, cores: Int? = nil) {
        queue = CPUCommandQueue(label: "gpubridge.cpu\(ordinal).queue")
        let online = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let cores = max(1, cores ?? online)
        self.cores = cores
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = Int(sysconf(Int32(_SC_PHYS_PAGES)))
        let (name, vendor) = Self.processorName()
        #if arch(x86_64)
            let architecture = "x86_64"
        #elseif arch(arm64)
            let architecture = "arm64"
        #else
            let architecture = "unknown"
        #endif
        info = DeviceInfo(
            id: DeviceID(backend: .cpu, ordinal: ordinal), name: name, vendor: vendor,
            driverVersion: "GPUBridge CPU backend", architecture: architecture,
            totalMemory: pageSize * pages, computeUnits: cores, maxGroupItems: 1024,
            maxGroupSize: [1024, 1024, 1024], maxGroups: [Int(Int32.max), 65535, 65535],
            capabilities: DeviceCapabilities(
                pinnedHostMemory: false, asyncCopies: true, sharedMemoryPerGroup: 0, profiling: true,
                unifiedMemory: true, float64: true, float16: false, viewOffsetAlignment: 1, memoryPools: false))
    }

    public func freeMemory() throws(GPUBridgeError) -> Int {
        // MemAvailable is what the kernel could hand out without swapping.
        if let text = try? FileStore.read("/proc/meminfo") {
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n")
            where line.hasPrefix("MemAvailable:") {
                let fields = line.split(separator: " ")
                if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
            }
        }
        return Int(sysconf(Int32(_SC_AVPHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    // MARK: Allocator

    public var allocationGranularity: Int { Self.alignment }

    public func allocate(byteCount: Int) throws(GPUBridgeError) -> UInt64 {
        switch CPUMemory.allocate(byteCount: byteCount, cores: cores) {
        case let .success(pointer):
            counters.recordAllocation()
            return UInt64(UInt(bitPattern: pointer))
        case let .failure(error) where error.code == ENOMEM:
            throw .outOfMemory(
                device: info.id.description, requested: byteCount, inUse: 0, cached: 0, limit: info.totalMemory,
                detail: "the host refused \(byteCount) bytes (\(FileStore.errorMessage(error.code)))")
        case let .failure(error):
            throw .backendFailure(
                backend: "cpu", call: "allocate \(byteCount) bytes", code: Int(error.code),
                message: FileStore.errorMessage(error.code))
        }
    }

    public func free(handle: UInt64, byteCount: Int) {
        CPUMemory.free(Self.pointer(UInt(handle)), byteCount: byteCount)
        counters.recordFree()
    }

    @inline(__always)
    private static func address(_ region: DeviceRegion) -> UInt {
        // Regions come from `allocate`, so the handle is a real, non-null address.
        UInt(region.handle) + UInt(region.offset)
    }

    @inline(__always)
    private static func pointer(_ address: UInt) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: address)!  // a non-zero address from `allocate` or `allocateHost`
    }

    /// Enqueues `body` as one command of `bytes` bytes (run on the calling thread when it is small and the queue is
    /// idle) and returns its completion, which keeps `owner` alive until the command has run.
    private func command(
        bytes: Int, retaining owner: (any Sendable)? = nil,
        _ body: @escaping @Sendable () -> Void
    ) -> Completion {
        let completion = Completion(retaining: owner.map { [$0] } ?? [])
        let queued = monotonicNanoseconds()
        queue.enqueue(inline: bytes <= Self.inlineBytes) {
            let start = monotonicNanoseconds()
            body()
            let end = monotonicNanoseconds()
            completion.complete(.success(ExecutionTimings(queued: queued, start: start, end: end)))
        }
        return completion
    }

    /// Synchronous copies run in queue order: after everything enqueued before them. The host pointer is passed as
    /// an address because the caller blocks until the copy has run, so it outlives the command.
    public func copy(from source: UnsafeRawBufferPointer, to destination: DeviceRegion) throws(GPUBridgeError) {
        guard let base = source.baseAddress, source.count > 0 else { return }
        let from = UInt(bitPattern: base), to = Self.address(destination), count = source.count, cores = cores
        queue.performAndWait {
            CPUMemory.copy(to: Self.pointer(to), from: Self.pointer(from), count: count, cores: cores)
        }
        counters.recordCopy(bytes: count)
    }

    public func copy(from source: DeviceRegion, to destination: UnsafeMutableRawBufferPointer) throws(GPUBridgeError) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        let from = Self.address(source), to = UInt(bitPattern: base), count = destination.count, cores = cores
        queue.performAndWait {
            CPUMemory.copy(to: Self.pointer(to), from: Self.pointer(from), count: count, cores: cores)
        }
        counters.recordCopy(bytes: count)
    }

    public func enqueueCopy(from source: DeviceRegion, to destination: DeviceRegion) throws(GPUBridgeError)
        -> Completion
    {
        let from = Self.address(source), to = Self.address(destination), count = source.byteCount, cores = cores
        counters.recordCopy(bytes: count)
        return command(bytes: count) {
            CPUMemory.move(to: Self.pointer(to), from: Self.pointer(from), count: count, cores: cores)
        }
    }

    public func enqueueFill(_ destination: DeviceRegion, pattern: [UInt8]) throws(GPUBridgeError) -> Completion {
        let to = Self.address(destination), count = destination.byteCount, cores = cores
        counters.recordCopy(bytes: count)
        return command(bytes: count) {
            CPUMemory.fill(Self.pointer(to), count: count, pattern: pattern, cores: cores)
        }
    }

    public func enqueueCopy(from source: HostAllocation, offset: Int, owner: any Sendable, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        let from = UInt(source.address) + UInt(offset), to = Self.address(destination), count = destination.byteCount
        let cores = cores
        counters.recordCopy(bytes: count)
        return command(bytes: count, retaining: owner) {
            CPUMemory.copy(to: Self.pointer(to), from: Self.pointer(from), count: count, cores: cores)
        }
    }

    public func enqueueCopy(from source: DeviceRegion, to destination: HostAllocation, offset: Int, owner: any Sendable)
        throws(GPUBridgeError) -> Completion
    {
        let from = Self.address(source), to = UInt(destination.address) + UInt(offset), count = source.byteCount
        let cores = cores
        counters.recordCopy(bytes: count)
        return command(bytes: count, retaining: owner) {
            CPUMemory.copy(to: Self.pointer(to), from: Self.pointer(from), count: count, cores: cores)
        }
    }

    public func allocateHost(byteCount: Int, pinned: Bool) throws(GPUBridgeError) -> HostAllocation {
        switch CPUMemory.allocate(byteCount: byteCount, cores: cores) {
        case let .success(pointer):
            // Host memory is the device's memory here: there is nothing to pin against.
            return HostAllocation(address: UInt64(UInt(bitPattern: pointer)), byteCount: byteCount, pinned: false)
        case let .failure(error):
            throw .outOfMemory(
                device: "host", requested: byteCount, inUse: 0, cached: 0, limit: info.totalMemory,
                detail: "the host refused \(byteCount) bytes (\(FileStore.errorMessage(error.code)))")
        }
    }

    public func freeHost(_ allocation: HostAllocation) {
        CPUMemory.free(Self.pointer(UInt(allocation.address)), byteCount: allocation.byteCount)
    }

    /// Copies `source` straight into device memory when the queue is idle (device memory is host memory here, so
    /// the copy is done before this returns); otherwise stages it as every backend does, and the copy runs in turn.
    public func enqueueCopy(copying source: UnsafeRawBufferPointer, to destination: DeviceRegion)
        throws(GPUBridgeError) -> Completion
    {
        guard let base = source.baseAddress, source.count > 0 else { return Completion(finished: .success(nil)) }
        let from = UInt(bitPattern: base), to = Self.address(destination), count = source.count, cores = cores
        let start = monotonicNanoseconds()
        let ran = queue.performIfIdle {
            CPUMemory.copy(to: Self.pointer(to), from: Self.pointer(from), count: count, cores: cores)
        }
        guard ran else {
            let staging = StagedHostMemory(backend: self, allocation: try allocateHost(byteCount: count, pinned: false))
            CPUMemory.copy(
                to: Self.pointer(UInt(staging.allocation.address)), from: Self.pointer(from), count: count,
                cores: cores)
            return try enqueueCopy(from: staging.allocation, offset: 0, owner: staging, to: destination)
        }
        counters.recordCopy(bytes: count)
        let end = monotonicNanoseconds()
        return Completion(finished: .success(ExecutionTimings(queued: start, start: start, end: end)))
    }

    // MARK: Compiler and program

    public var languages: Set<KernelLanguage> { [.swift] }
    public var compilerVersion: String { "swift" }
    public func compilerFlags(for options: CompileOptions) -> [String] { [] }

    public func compile(_ source: KernelSource, options: CompileOptions) throws(GPUBridgeError) -> KernelBinary {
        throw .unsupported(
            feature:
                "compiling \(source.language.rawValue) text ('\(source.name)'); write the kernel as a Swift function",
            backend: "cpu")
    }

    public func load(_ binary: KernelBinary, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        throw .unsupported(feature: "loading \(binary.format) binaries", backend: "cpu")
    }

    public func makeProgram(_ kernel: SwiftKernel, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        CPUProgram(kernel: kernel, entryPoint: source.entryPoint, name: source.name, backend: self)
    }

    // MARK: Queue

    /// Suspends until every command enqueued before this call has ended (a marker at the end of the queue).
    public func synchronize() async throws(GPUBridgeError) {
        let marker = Completion()
        queue.enqueue(inline: true) { marker.complete(.success(nil)) }
        try await marker.wait()
    }

    private static func processorName() -> (String, String) {
        var name = "CPU", vendor = "unknown"
        if let text = try? FileStore.read("/proc/cpuinfo") {
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: " \t") }
                guard parts.count == 2 else { continue }
                if parts[0] == "model name", name == "CPU" { name = parts[1] }
                if parts[0] == "vendor_id", vendor == "unknown" { vendor = parts[1] }
            }
        }
        return (name, vendor)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = self[...]
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
