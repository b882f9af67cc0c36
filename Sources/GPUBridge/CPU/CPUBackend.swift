import Dispatch
import Glibc
import Synchronization

/// The pure-Swift backend: device memory is 64-byte-aligned host memory, kernels are Swift functions, and a launch
/// is split across the host's cores. Always available.
///
/// Thread safety: stateless apart from lock-free counters; every method may be called from any thread.
public final class CPUBackend: DeviceBackend {
    public let info: DeviceInfo
    public let counters = DeviceCounters()
    /// Host threads a large launch is split across.
    public let cores: Int
    /// Launches with at most this many work-items run on the calling thread (spreading them costs more than it saves).
    public static let inlineWorkItems = 1 << 15
    /// Alignment of every allocation, in bytes (a cache line, and enough for any SIMD type).
    public static let alignment = 64

    /// A CPU device. `ordinal` tells several CPU devices apart (tests use two); `cores` defaults to all online cores.
    public init(ordinal: Int = 0, cores: Int? = nil) {
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
                pinnedHostMemory: false, asyncCopies: false, sharedMemoryPerGroup: 0, profiling: true,
                unifiedMemory: true, float64: true, float16: false, viewOffsetAlignment: 1, memoryPools: false))
    }

    public func freeMemory() throws(GPUBridgeError) -> Int {
        // MemAvailable is what the kernel could hand out without swapping.
        if let text = try? FileStore.read("/proc/meminfo") {
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                let fields = line.split(separator: " ")
                if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
            }
        }
        return Int(sysconf(Int32(_SC_AVPHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    // MARK: Allocator

    public var allocationGranularity: Int { Self.alignment }

    public func allocate(byteCount: Int) throws(GPUBridgeError) -> UInt64 {
        var pointer: UnsafeMutableRawPointer?
        let status = posix_memalign(&pointer, Self.alignment, byteCount)
        guard status == 0, let pointer else {
            if status == ENOMEM || pointer == nil {
                throw .outOfMemory(device: info.id.description, requested: byteCount, inUse: 0, cached: 0,
                                   limit: info.totalMemory, detail: "posix_memalign returned \(status)")
            }
            throw .backendFailure(backend: "cpu", call: "posix_memalign", code: Int(status), message: FileStore.errorMessage(status))
        }
        counters.recordAllocation()
        return UInt64(UInt(bitPattern: pointer))
    }

    public func free(handle: UInt64, byteCount: Int) {
        Glibc.free(UnsafeMutableRawPointer(bitPattern: UInt(handle)))
        counters.recordFree()
    }

    @inline(__always)
    private func pointer(_ region: DeviceRegion) -> UnsafeMutableRawPointer {
        // Regions come from `allocate`, so the handle is a real, non-null address.
        UnsafeMutableRawPointer(bitPattern: UInt(region.handle) + UInt(region.offset))!
    }

    public func copy(from source: UnsafeRawBufferPointer, to destination: DeviceRegion) throws(GPUBridgeError) {
        guard let base = source.baseAddress, source.count > 0 else { return }
        memcpy(pointer(destination), base, source.count)
        counters.recordCopy(bytes: source.count)
    }

    public func copy(from source: DeviceRegion, to destination: UnsafeMutableRawBufferPointer) throws(GPUBridgeError) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        memcpy(base, pointer(source), destination.count)
        counters.recordCopy(bytes: destination.count)
    }

    public func enqueueCopy(from source: DeviceRegion, to destination: DeviceRegion) throws(GPUBridgeError) -> Completion {
        memmove(pointer(destination), pointer(source), source.byteCount)
        counters.recordCopy(bytes: source.byteCount)
        return Completion(finished: .success(nil))
    }

    public func enqueueFill(_ destination: DeviceRegion, pattern: [UInt8]) throws(GPUBridgeError) -> Completion {
        let base = pointer(destination)
        if pattern.allSatisfy({ $0 == pattern[0] }) {
            memset(base, Int32(pattern[0]), destination.byteCount)
        } else {
            pattern.withUnsafeBytes { p in
                var offset = 0
                while offset < destination.byteCount {
                    memcpy(base + offset, p.baseAddress!, pattern.count)
                    offset += pattern.count
                }
            }
        }
        counters.recordCopy(bytes: destination.byteCount)
        return Completion(finished: .success(nil))
    }

    public func enqueueCopy(from source: HostAllocation, offset: Int, owner: any Sendable, to destination: DeviceRegion) throws(GPUBridgeError) -> Completion {
        memcpy(pointer(destination), UnsafeRawPointer(bitPattern: UInt(source.address) + UInt(offset))!, destination.byteCount)
        counters.recordCopy(bytes: destination.byteCount)
        return Completion(finished: .success(nil))
    }

    public func enqueueCopy(from source: DeviceRegion, to destination: HostAllocation, offset: Int, owner: any Sendable) throws(GPUBridgeError) -> Completion {
        memcpy(UnsafeMutableRawPointer(bitPattern: UInt(destination.address) + UInt(offset))!, pointer(source), source.byteCount)
        counters.recordCopy(bytes: source.byteCount)
        return Completion(finished: .success(nil))
    }

    public func allocateHost(byteCount: Int, pinned: Bool) throws(GPUBridgeError) -> HostAllocation {
        var pointer: UnsafeMutableRawPointer?
        let status = posix_memalign(&pointer, Self.alignment, byteCount)
        guard status == 0, let pointer else {
            throw .outOfMemory(device: "host", requested: byteCount, inUse: 0, cached: 0, limit: info.totalMemory,
                               detail: "posix_memalign returned \(status)")
        }
        // Host memory is the device's memory here: there is nothing to pin against.
        return HostAllocation(address: UInt64(UInt(bitPattern: pointer)), byteCount: byteCount, pinned: false)
    }

    public func freeHost(_ allocation: HostAllocation) {
        Glibc.free(UnsafeMutableRawPointer(bitPattern: UInt(allocation.address)))
    }

    // MARK: Compiler and program

    public var languages: Set<KernelLanguage> { [.swift] }
    public var compilerVersion: String { "swift" }
    public func compilerFlags(for options: CompileOptions) -> [String] { [] }

    public func compile(_ source: KernelSource, options: CompileOptions) throws(GPUBridgeError) -> KernelBinary {
        throw .unsupported(feature: "compiling \(source.language.rawValue) text ('\(source.name)'); write the kernel as a Swift function", backend: "cpu")
    }

    public func load(_ binary: KernelBinary, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        throw .unsupported(feature: "loading \(binary.format) binaries", backend: "cpu")
    }

    public func makeProgram(_ kernel: SwiftKernel, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        CPUProgram(kernel: kernel, entryPoint: source.entryPoint, backend: self)
    }

    // MARK: Queue

    /// The CPU backend finishes each command before `enqueue` returns or completes it from its worker; there is
    /// nothing left to wait for once those completions have been delivered.
    public func synchronize() async throws(GPUBridgeError) {}

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

/// A Swift kernel ready to run on the CPU backend.
final class CPUProgram: KernelProgram {
    let kernel: SwiftKernel
    let entryPoint: String
    let backend: CPUBackend
    var parameterCount: Int? { nil }

    init(kernel: SwiftKernel, entryPoint: String, backend: CPUBackend) {
        self.kernel = kernel
        self.entryPoint = entryPoint
        self.backend = backend
    }

    func enqueue(_ launch: Launch, arguments: [ResolvedArgument]) throws(GPUBridgeError) -> Completion {
        backend.counters.recordLaunch()
        let groupCount = launch.groups.x * launch.groups.y * launch.groups.z
        let items = groupCount * (launch.groupSize.x * launch.groupSize.y * launch.groupSize.z)
        let queued = monotonicNanoseconds()
        let small = kernel.scheduling == .perItem && items <= CPUBackend.inlineWorkItems
        let chunks = small || backend.cores == 1 ? 1 : min(groupCount, backend.cores * 4)
        if chunks == 1 {
            let start = monotonicNanoseconds()
            do {
                try kernel.body(CPUKernelContext(arguments: arguments, launch: launch, groups: 0 ..< groupCount))
            } catch {
                return Completion(finished: .failure(Self.wrap(error, entryPoint)))
            }
            let end = monotonicNanoseconds()
            return Completion(finished: .success(ExecutionTimings(queued: queued, submitted: start, start: start, end: end)))
        }
        let completion = Completion()
        let body = kernel.body
        let entryPoint = entryPoint
        DispatchQueue.global().async {
            let start = monotonicNanoseconds()
            let failure = FirstError()
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let lower = groupCount * chunk / chunks
                let upper = groupCount * (chunk + 1) / chunks
                guard lower < upper else { return }
                do {
                    try body(CPUKernelContext(arguments: arguments, launch: launch, groups: lower ..< upper))
                } catch {
                    failure.record(Self.wrap(error, entryPoint))
                }
            }
            let end = monotonicNanoseconds()
            if let error = failure.value {
                completion.complete(.failure(error))
            } else {
                completion.complete(.success(ExecutionTimings(queued: queued, submitted: start, start: start, end: end)))
            }
        }
        return completion
    }

    static func wrap(_ error: any Error, _ entryPoint: String) -> GPUBridgeError {
        if let error = error as? GPUBridgeError { return error }
        return .backendFailure(backend: "cpu", call: "kernel \(entryPoint)", code: -1, message: "\(error)")
    }
}

/// The first error seen by concurrent workers.
private final class FirstError: Sendable {
    private let storage = Mutex<GPUBridgeError?>(nil)
    func record(_ error: GPUBridgeError) { storage.withLock { if $0 == nil { $0 = error } } }
    var value: GPUBridgeError? { storage.withLock { $0 } }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Finds the CPU device. Always available.
public struct CPUBackendProvider: BackendProvider {
    public init() {}
    public var backend: BackendKind { .cpu }
    public func discover() -> BackendReport {
        let device = CPUBackend()
        return BackendReport(backend: .cpu, devices: [device],
                             details: [("cores", String(device.cores)), ("alignment", "\(CPUBackend.alignment) bytes")])
    }
}
