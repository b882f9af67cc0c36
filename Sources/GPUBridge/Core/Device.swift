import Logging
import Synchronization
import Tracing

/// A compiled kernel loaded on one device.
///
/// Made by `Device.compile`; launched with `Device.launch`. Immutable and shareable across tasks.
public final class Kernel: Sendable, CustomStringConvertible {
    /// The device the kernel is loaded on.
    public let device: Device
    /// The kernel's name and declared parameters.
    public let name: String
    public let parameters: [KernelParameter]?
    /// The group shape and scalar ranges its launches must keep to, where it has any.
    public let limits: LaunchLimits?
    /// The backend's loaded program.
    public let program: any KernelProgram

    init(device: Device, source: KernelSource, program: any KernelProgram) {
        self.device = device
        self.name = source.name
        self.parameters = source.parameters
        self.limits = source.limits
        self.program = program
    }

    public var description: String { "Kernel(\(name) on \(device.id))" }
}

/// What one launch did: where it ran, its shape, the host-observed time and the device's own timings.
public struct ExecutionResult: Sendable, Hashable {
    public var device: DeviceID
    public var kernel: String
    public var launch: Launch
    /// Time from enqueue to observed completion, measured on the host.
    public var hostDuration: Duration
    /// Queued/submitted/start/end on the device clock, where the backend measures them.
    public var timings: ExecutionTimings?
}

/// One device, ready to use: its backend, its buffer pool and its compiled kernels.
///
/// Ownership: a `Device` owns its `BufferPool` and its loaded kernels; buffers keep their device alive. Thread safety:
/// every method may be called from any task concurrently. Cost: allocation goes through the pool (a hit is well under a
/// microsecond); `launch` validates arguments in O(arguments) and allocates no device memory.
public final class Device: Sendable, CustomStringConvertible, Hashable {
    /// The backend driving this device.
    public let backend: any DeviceBackend
    /// The caching allocator for this device's memory.
    public let pool: BufferPool
    /// The compiled-binary cache shared with other devices.
    public let cache: KernelCache
    let metrics: DeviceMetrics
    /// A number unique to this `Device` object in the process (1, 2, ...). Two objects may wrap devices with the same
    /// id (two `CPUBackend()`s are both `cpu:0`); errors that name two devices use it to tell them apart.
    public let serial: Int
    private static let serials = Atomic<Int>(0)
    private let programs = Mutex<[String: any KernelProgram]>([:])
    private let logger = Logger(label: "gpubridge.device")

    /// Wraps `backend` with a pool capped at `poolLimit` bytes (default: the device's memory) and a kernel cache.
    public init(backend: any DeviceBackend, poolLimit: Int? = nil, cache: KernelCache = KernelCache(directory: nil))
        throws(GPUBridgeError)
    {
        self.backend = backend
        self.pool = try BufferPool(backend: backend, limit: poolLimit)
        self.cache = cache
        self.metrics = DeviceMetrics(device: backend.info.id.description)
        self.serial = Self.serials.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// The two devices' names for a "wrong device" error: their ids, or, where the ids are equal (two `Device` objects
    /// for one id), the ids with each object's `serial`.
    static func names(expected: Device, actual: Device) -> (expected: String, actual: String) {
        guard expected.id == actual.id else { return (expected.id.description, actual.id.description) }
        return ("\(expected.id) (Device object #\(expected.serial))", "\(actual.id) (Device object #\(actual.serial))")
    }

    /// The device's identity, names and limits.
    public var info: DeviceInfo { backend.info }
    public var id: DeviceID { backend.info.id }
    /// Counts of native operations (allocations, copies, launches, compiles) made on this device.
    public var counters: DeviceCounters { backend.counters }
    /// Device memory the driver reports free now.
    public func freeMemory() throws(GPUBridgeError) -> Int { try backend.freeMemory() }

    /// Why this device can no longer run work in this process (a fault ended its context), or nil while it can.
    /// Once set it stays set: every command fails with `GPUBridgeError.deviceLost`, and `DeviceBroker` sends the
    /// device nothing more.
    public var lostReason: String? { backend.lostReason }

    public var description: String { "\(id) \(info.name)" }
    public static func == (a: Device, b: Device) -> Bool { a === b }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    // MARK: Memory

    /// Allocates `byteCount` bytes of device memory from the pool. Contents are undefined.
    public func makeRawBuffer(byteCount: Int) throws(GPUBridgeError) -> RawBuffer {
        guard byteCount > 0 else {
            throw .invalidArgument(name: "byteCount", value: String(byteCount), limit: "1...\(pool.limit) bytes")
        }
        let block = try pool.allocate(byteCount: byteCount)
        return RawBuffer(
            device: self, owner: BlockOwner(pool: pool, block: block), parent: nil, offset: 0, byteCount: byteCount)
    }

    /// Allocates room for `count` elements of `Element`. Contents are undefined.
    public func makeBuffer<Element: BitwiseCopyable>(of type: Element.Type, count: Int) throws(GPUBridgeError)
        -> Buffer<Element>
    {
        let stride = MemoryLayout<Element>.stride
        let (bytes, overflow) = count.multipliedReportingOverflow(by: stride)
        guard count > 0, !overflow else {
            throw .invalidArgument(
                name: "count", value: String(count), limit: "1...\(pool.limit / stride) elements of \(Element.self)")
        }
        return Buffer(unchecked: try makeRawBuffer(byteCount: bytes))
    }

    /// A read-only buffer over the elements of `values` themselves, with no copy, on a device whose kernels address
    /// host memory directly (the CPU backend); nil on any other device, where the caller copies as before.
    ///
    /// Only for kernels that read the buffer and never write it: the bytes are the array's storage, which other
    /// copies of the array share. A launch passing it to a parameter not declared `.readOnly`, and any copy or fill
    /// into it, fails with `invalidArgument`. The built-in operations (`Operations`) use it for their inputs, so that
    /// on the CPU backend a sum or a matmul reads the caller's arrays in place, as numpy does, instead of uploading
    /// them first. Cost: no allocation in the pool and no copy; one retain of the array.
    ///
    /// Why the storage cannot move or change while the buffer lives: the buffer's owner holds a copy of `values`, so
    /// the storage object stays allocated (an array's elements never move while its storage lives), and its reference
    /// count stays above one while the caller holds the array too, so a mutation through any other copy copies the
    /// storage first instead of writing to it. Nothing writes through the owner's copy. A non-empty array's storage is
    /// its own (only the empty array's is shared, and `values` must not be empty).
    package func borrowBuffer<Element: BitwiseCopyable & Sendable>(_ values: [Element]) -> Buffer<Element>? {
        guard id.backend == .cpu, !values.isEmpty else { return nil }
        let byteCount = values.count * MemoryLayout<Element>.stride
        let address = values.withUnsafeBytes { UInt64(UInt(bitPattern: $0.baseAddress!)) }
        let owner = BlockOwner(
            borrowing: DeviceRegion(handle: address, offset: 0, byteCount: byteCount), from: values)
        return Buffer(
            unchecked: RawBuffer(device: self, owner: owner, parent: nil, offset: 0, byteCount: byteCount))
    }

    /// Allocates a buffer holding a copy of `values` (a synchronous upload).
    public func makeBuffer<Element: BitwiseCopyable>(copying values: [Element]) throws(GPUBridgeError) -> Buffer<
        Element
    > {
        let buffer = try makeBuffer(of: Element.self, count: values.count)
        try buffer.copy(from: values)
        return buffer
    }

    /// Allocates host memory for asynchronous transfers with this device; pinned where the backend supports it.
    public func makeHostBuffer(byteCount: Int, pinned: Bool = true) throws(GPUBridgeError) -> HostBuffer {
        guard byteCount > 0 else {
            throw .invalidArgument(name: "byteCount", value: String(byteCount), limit: "1...\(Int.max) bytes")
        }
        return HostBuffer(device: self, allocation: try backend.allocateHost(byteCount: byteCount, pinned: pinned))
    }

    // MARK: Kernels

    /// Compiles `source` for this device, or finds it in the kernel cache (memory, then disk).
    public func compile(_ source: KernelSource, options: CompileOptions = CompileOptions()) throws(GPUBridgeError)
        -> Kernel
    {
        guard !source.name.isEmpty else {
            throw .invalidArgument(name: "source.name", value: "\"\"", limit: "a non-empty name")
        }
        guard !source.entryPoint.isEmpty else {
            throw .invalidArgument(name: "source.entryPoint", value: "\"\"", limit: "a non-empty function name")
        }
        guard backend.languages.contains(source.language) else {
            throw .unsupported(
                feature: "kernels in \(source.language.rawValue) ('\(source.name)')", backend: id.backend.rawValue)
        }
        switch source.body {
        case let .swift(function):
            return Kernel(device: self, source: source, program: try backend.makeProgram(function, source: source))
        case let .text(text):
            let key = KernelCache.Key(
                backend: id.backend.rawValue, architecture: info.architecture,
                compiler: backend.compilerVersion, flags: backend.compilerFlags(for: options),
                language: source.language.rawValue, entryPoint: source.entryPoint, source: text)
            // A kernel declaring a routine may load as a library-backed program: keep it apart from the same text
            // loaded without one.
            let digest = source.routine.map { "\(key.digest)+\($0.rawValue)" } ?? key.digest
            if let program = programs.withLock({ $0[digest] }) {
                cache.recordLoadedHit()
                return Kernel(device: self, source: source, program: program)
            }
            let binary: KernelBinary
            do {
                binary = try cache.binary(for: key) { () throws(GPUBridgeError) -> KernelBinary in
                    metrics.compiles.increment()
                    return try backend.compile(source, options: options)
                }
            } catch {
                metrics.compileFailures.increment()
                logger.notice("kernel compilation failed", metadata: ["kernel": "\(source.name)", "device": "\(id)"])
                throw error
            }
            let loaded = try retryingAfterTrim("loading '\(source.name)'") { () throws(GPUBridgeError) in
                try backend.load(binary, source: source)
            }
            let program = programs.withLock { programs -> any KernelProgram in
                if let existing = programs[digest] { return existing }
                programs[digest] = loaded
                return loaded
            }
            return Kernel(device: self, source: source, program: program)
        }
    }

    /// The entry points of the kernel text loaded on this device (compiled or read from the cache, then kept for the
    /// device's lifetime), sorted; Swift kernels of the CPU backend are not kept and not listed. One lock.
    public var loadedKernels: [String] {
        programs.withLock { Set($0.values.map(\.entryPoint)) }.sorted()
    }

    /// Enqueues `kernel` with `arguments` in declared order and returns at once; the completion reports the end.
    ///
    /// Checks before anything reaches the device: the launch shape against the device's limits, every buffer's
    /// device, and (where the kernel declares parameters or the binary says) the argument count, kinds, scalar
    /// types and buffer lengths. Buffers are handed over by handle: nothing is allocated or copied. The completion
    /// keeps the argument buffers alive until the launch has finished.
    public func enqueue(_ kernel: Kernel, _ launch: Launch, arguments: [KernelArgument]) throws(GPUBridgeError)
        -> Completion
    {
        guard kernel.device === self else {
            let names = Device.names(expected: self, actual: kernel.device)
            throw .wrongDevice(name: "kernel '\(kernel.name)'", expected: names.expected, actual: names.actual)
        }
        try launch.validate(for: info)
        try kernel.limits?.check(launch, arguments: arguments, kernel: kernel.name, parameters: kernel.parameters)
        let resolved = try resolve(arguments, for: kernel, launch: launch)
        metrics.launches.increment()
        do {
            let completion = try retryingAfterTrim("launching '\(kernel.name)'") { () throws(GPUBridgeError) in
                try kernel.program.enqueue(launch, arguments: resolved)
            }
            // The buffers must outlive the launch even if the caller drops them right after enqueueing: otherwise
            // their blocks could return to the pool and be handed out while the kernel still uses them.
            if !completion.isComplete {
                var buffers: [RawBuffer] = []
                for case let .buffer(buffer) in arguments { buffers.append(buffer) }
                if !buffers.isEmpty { completion.retain(buffers) }
            }
            return completion
        } catch {
            metrics.launchFailures.increment()
            logger.error(
                "launch failed", metadata: ["kernel": "\(kernel.name)", "device": "\(id)", "error": "\(error)"])
            throw error
        }
    }

    /// Launches `kernel` and suspends until it has finished.
    @discardableResult
    public func launch(_ kernel: Kernel, _ launch: Launch, arguments: [KernelArgument]) async throws(GPUBridgeError)
        -> ExecutionResult
    {
        let clock = ContinuousClock()
        let start = clock.now
        let span = startSpan(SpanNames.launch, ofKind: .internal)
        defer { span.end() }
        if span.isRecording {
            span.updateAttributes { a in
                a["gpubridge.device"] = id.description
                a["gpubridge.kernel"] = kernel.name
                a["gpubridge.launch"] = launch.description
                a["gpubridge.launch.arguments"] = arguments.count
            }
        }
        let timings: ExecutionTimings?
        do throws(GPUBridgeError) {
            let completion = try enqueue(kernel, launch, arguments: arguments)
            do throws(GPUBridgeError) {
                timings = try await completion.wait()
            } catch {
                metrics.launchFailures.increment()
                throw error
            }
        } catch {
            span.recordError(error)
            span.setStatus(SpanStatus(code: .error))
            throw error
        }
        let elapsed = clock.now - start
        metrics.launchLatency.recordNanoseconds(elapsed.nanoseconds)
        counters.recordLaunchAwaited(nanoseconds: Int(elapsed.nanoseconds))
        if span.isRecording, let timings {
            span.attributes["gpubridge.launch.device_ns"] = Int(timings.duration.nanoseconds)
        }
        return ExecutionResult(device: id, kernel: kernel.name, launch: launch, hostDuration: elapsed, timings: timings)
    }

    /// Suspends until all work enqueued on this device has finished.
    public func synchronize() async throws(GPUBridgeError) { try await backend.synchronize() }

    private func resolve(_ arguments: [KernelArgument], for kernel: Kernel, launch: Launch) throws(GPUBridgeError)
        -> [ResolvedArgument]
    {
        if let declared = kernel.parameters {
            guard arguments.count == declared.count else {
                throw .argumentMismatch(
                    kernel: kernel.name,
                    detail:
                        "expected \(declared.count) arguments (\(declared.map(\.name).joined(separator: ", "))), got \(arguments.count)"
                )
            }
        } else if let count = kernel.program.parameterCount, arguments.count != count {
            throw .argumentMismatch(
                kernel: kernel.name, detail: "the compiled kernel takes \(count) arguments, got \(arguments.count)")
        }
        var resolved: [ResolvedArgument] = []
        resolved.reserveCapacity(arguments.count)
        for (index, argument) in arguments.enumerated() {
            switch argument {
            case let .buffer(buffer):
                guard buffer.device === self else {
                    let names = Device.names(expected: self, actual: buffer.device)
                    throw .wrongDevice(
                        name: "argument \(index) of '\(kernel.name)'", expected: names.expected,
                        actual: names.actual)
                }
                if buffer.isReadOnly {
                    guard let declared = kernel.parameters,
                        case .buffer(_, _, _, .readOnly) = declared[index]
                    else {
                        throw .invalidArgument(
                            name: "argument \(index) of '\(kernel.name)'",
                            value: "\(buffer), read-only memory borrowed from an array",
                            limit: "a parameter the kernel declares .readOnly")
                    }
                }
                if let declared = kernel.parameters {
                    guard case let .buffer(name, elementSize, extent, _) = declared[index] else {
                        throw .argumentMismatch(
                            kernel: kernel.name,
                            detail: "argument \(index) ('\(declared[index].name)') is a scalar, got a buffer")
                    }
                    try checkExtent(
                        buffer, name: name, index: index, elementSize: elementSize, extent: extent,
                        arguments: arguments, kernel: kernel, launch: launch)
                    try checkAlignment(buffer, name: name, index: index, elementSize: elementSize, kernel: kernel)
                }
                resolved.append(.memory(buffer.region))
            case let .scalar(value):
                if let declared = kernel.parameters {
                    guard case let .scalar(name, type) = declared[index] else {
                        throw .argumentMismatch(
                            kernel: kernel.name,
                            detail: "argument \(index) ('\(declared[index].name)') is a buffer, got \(value)")
                    }
                    guard type == value.type else {
                        throw .argumentMismatch(
                            kernel: kernel.name,
                            detail: "argument \(index) ('\(name)') is \(type.rawValue), got \(value)")
                    }
                }
                resolved.append(.scalar(value))
            }
        }
        return resolved
    }

    /// Runs `body`; when the driver had no device memory for it (modules, launches, copies, streams and events need
    /// driver memory too, not only buffers), gives the pool's cached segments back and runs it once more. A backend that
    /// frees memory asynchronously (CUDA) waits for those frees before its own retry.
    func retryingAfterTrim<T>(_ what: @autoclosure () -> String, _ body: () throws(GPUBridgeError) -> T)
        throws(GPUBridgeError) -> T
    {
        do {
            return try body()
        } catch {
            guard case .outOfMemory = error else { throw error }
            let freed = pool.trimForSpace()
            logger.notice(
                "device out of memory; trimmed the pool and retrying",
                metadata: ["device": "\(id)", "while": "\(what())", "trimmed": "\(freed)"])
            do {
                return try body()
            } catch {
                guard case let .outOfMemory(_, _, _, _, _, detail) = error else { throw error }
                // No buffer was requested: the driver needed memory of its own (its size is not reported).
                throw pool.outOfMemory(
                    requested: 0, detail: "\(what()) after trimming \(freed) cached bytes: \(detail)")
            }
        }
    }

    /// A buffer argument must start at a multiple of its element's alignment (the largest power of two dividing the
    /// element size, at most 16): a kernel that loads a `float` from an odd address faults, and on CUDA that fault
    /// (`CUDA_ERROR_MISALIGNED_ADDRESS`) ends the device's context for the whole process. Allocations are aligned to
    /// at least 256 bytes, so the view's offset decides.
    private func checkAlignment(_ buffer: RawBuffer, name: String, index: Int, elementSize: Int, kernel: Kernel)
        throws(GPUBridgeError)
    {
        guard elementSize > 1 else { return }
        let alignment = min(16, elementSize & -elementSize)
        let offset = buffer.region.offset
        guard offset % alignment == 0 else {
            throw .invalidArgument(
                name: "argument \(index) ('\(name)') of '\(kernel.name)'",
                value: "a view at byte offset \(offset)",
                limit:
                    "offsets that are multiples of \(alignment) bytes (the alignment of its \(elementSize)-byte elements)"
            )
        }
    }

    /// "M x K = 16 x 16": the names of a product's factors, then their values.
    private static func product(_ factors: [(name: String, value: Int)]) -> String {
        factors.map(\.name).joined(separator: " x ") + " = " + factors.map { String($0.value) }.joined(separator: " x ")
    }

    private func checkExtent(
        _ buffer: RawBuffer, name: String, index: Int, elementSize: Int, extent: BufferExtent,
        arguments: [KernelArgument], kernel: Kernel, launch: Launch
    ) throws(GPUBridgeError) {
        /// The integer scalar argument at `countIndex`, which sizes this buffer.
        func count(_ countIndex: Int) throws(GPUBridgeError) -> Int {
            guard countIndex >= 0, countIndex < arguments.count, case let .scalar(value) = arguments[countIndex],
                let n = value.integerValue
            else {
                throw .argumentMismatch(
                    kernel: kernel.name,
                    detail: "the length of '\(name)' is given by argument \(countIndex), which is not an integer scalar"
                )
            }
            return n
        }
        let needed: Int
        var reason = ""
        switch extent {
        case .any:
            return
        case let .elements(n):
            needed = n
        case .globalSize:
            needed = launch.globalSize?.product ?? Int.max
        case .groupCount:
            needed = launch.groups.product ?? Int.max
            reason = " (one per group)"
        case let .argument(countIndex):
            needed = try count(countIndex)
        case let .product(indices):
            var product = 1
            var factors: [(name: String, value: Int)] = []
            for countIndex in indices {
                let n = try count(countIndex)
                let factor =
                    kernel.parameters.flatMap { countIndex < $0.count ? $0[countIndex].name : nil }
                    ?? "argument \(countIndex)"
                guard n >= 0 else {
                    throw .argumentMismatch(
                        kernel: kernel.name,
                        detail:
                            "argument \(countIndex) ('\(factor)') is \(n): a count that sizes '\(name)' must be at least 0"
                    )
                }
                factors.append((factor, n))
                let (next, overflow) = product.multipliedReportingOverflow(by: n)
                guard !overflow else {
                    throw .argumentMismatch(
                        kernel: kernel.name,
                        detail: "the length of '\(name)', \(Self.product(factors)), is more than \(Int.max) elements")
                }
                product = next
            }
            needed = product
            reason = " (\(Self.product(factors)))"
        }
        let (bytes, overflow) = needed.multipliedReportingOverflow(by: elementSize)
        guard !overflow, buffer.byteCount >= bytes else {
            throw .argumentMismatch(
                kernel: kernel.name,
                detail:
                    "argument \(index) ('\(name)') holds \(buffer.byteCount / max(1, elementSize)) elements (\(buffer.byteCount) bytes) but the launch reaches \(needed) elements\(reason)"
            )
        }
    }
}

extension Duration {
    /// The duration in whole nanoseconds.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
