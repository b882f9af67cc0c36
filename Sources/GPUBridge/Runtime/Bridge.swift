import Logging
import Metrics
import Tracing

/// Options of a `Bridge`. Defaults suit one process with whatever devices it finds; `validate()` rejects nonsense.
public struct BridgeOptions: Sendable {
    /// Backends to use, best first. Requests go to the first backend with a healthy device.
    public var backendOrder: [BackendKind] = [.cuda, .opencl, .cpu]
    /// After a device fails a request (and its retries), move on to the next device and backend in the order.
    /// When false, the request fails with the first device's errors.
    public var fallback = true
    /// Requests running at once on one device; more wait for a slot.
    public var maxConcurrentLaunchesPerDevice = 8
    /// Byte limit of each device's buffer pool; nil: the device's memory.
    public var poolLimitPerDevice: Int?
    /// Most requests one micro-batch coalesces (see `Batcher`).
    public var microBatchSize = 1024
    /// How long the first request of a micro-batch waits for others before the batch runs.
    public var microBatchWindow: Duration = .microseconds(200)
    /// Attempts per device for a request whose failure may be transient (a launch or driver failure), at least 1.
    public var attemptsPerDevice = 2
    /// Consecutive failures that open a device's circuit, and how long before it is probed again.
    public var failureThreshold = 3
    public var probeInterval: Duration = .seconds(5)
    /// Folder of the on-disk kernel cache; nil keeps compiled kernels in memory only.
    public var cacheDirectory: String? = KernelCache.defaultDirectory

    public init() {}

    /// Throws `invalidArgument` naming the first option out of range.
    public func validate() throws(GPUBridgeError) {
        guard !backendOrder.isEmpty else {
            throw .invalidArgument(name: "backendOrder", value: "[]", limit: "at least one backend")
        }
        guard Set(backendOrder).count == backendOrder.count else {
            throw .invalidArgument(
                name: "backendOrder", value: "\(backendOrder.map(\.rawValue))", limit: "each backend once")
        }
        guard maxConcurrentLaunchesPerDevice >= 1, maxConcurrentLaunchesPerDevice <= 4096 else {
            throw .invalidArgument(
                name: "maxConcurrentLaunchesPerDevice", value: String(maxConcurrentLaunchesPerDevice), limit: "1...4096"
            )
        }
        if let limit = poolLimitPerDevice, limit < 1 {
            throw .invalidArgument(name: "poolLimitPerDevice", value: String(limit), limit: "1...\(Int.max) bytes")
        }
        guard microBatchSize >= 1, microBatchSize <= 1 << 20 else {
            throw .invalidArgument(name: "microBatchSize", value: String(microBatchSize), limit: "1...\(1 << 20)")
        }
        guard microBatchWindow >= .zero, microBatchWindow <= .seconds(10) else {
            throw .invalidArgument(name: "microBatchWindow", value: "\(microBatchWindow)", limit: "0...10 seconds")
        }
        guard attemptsPerDevice >= 1, attemptsPerDevice <= 100 else {
            throw .invalidArgument(name: "attemptsPerDevice", value: String(attemptsPerDevice), limit: "1...100")
        }
        guard failureThreshold >= 1 else {
            throw .invalidArgument(name: "failureThreshold", value: String(failureThreshold), limit: "1...\(Int.max)")
        }
        guard probeInterval >= .zero else {
            throw .invalidArgument(name: "probeInterval", value: "\(probeInterval)", limit: "zero or more")
        }
        if let dir = cacheDirectory, dir.isEmpty {
            throw .invalidArgument(name: "cacheDirectory", value: "\"\"", limit: "a folder path or nil")
        }
    }
}

/// The entry object: finds devices once, owns their pools, the kernel cache, the catalog and the broker, and runs
/// operations with retries and fallback so an application need not care which device it got.
///
/// Every request ends with its result or with `GPUBridgeError.allAttemptsFailed` naming every attempt; a request is
/// never dropped, and it runs to completion on at most one device (a failed attempt produced no result).
/// Thread safety: any task may call `run` concurrently.
public final class Bridge: Sendable {
    public let options: BridgeOptions
    /// The devices found, in discovery order.
    public let devices: [Device]
    /// What each backend reported at discovery (devices, or why it is unavailable).
    public let reports: [BackendReport]
    public let catalog: KernelCatalog
    public let broker: DeviceBroker
    public let cache: KernelCache
    private let logger = Logger(label: "gpubridge.bridge")

    /// Discovers devices with `providers` (for example `CPUBackendProvider()` plus the OpenCL and CUDA providers).
    public convenience init(
        options: BridgeOptions = BridgeOptions(), providers: [any BackendProvider],
        catalog: KernelCatalog = KernelCatalog()
    ) throws(GPUBridgeError) {
        try options.validate()
        let reports = providers.map { $0.discover() }
        try self.init(options: options, backends: reports.flatMap(\.devices), reports: reports, catalog: catalog)
    }

    /// Uses the given backends as they are (tests, or an application that picked its devices itself).
    public init(
        options: BridgeOptions = BridgeOptions(), backends: [any DeviceBackend], reports: [BackendReport] = [],
        catalog: KernelCatalog = KernelCatalog()
    ) throws(GPUBridgeError) {
        try options.validate()
        guard !backends.isEmpty else {
            throw .backendUnavailable(
                backend: "any",
                reason: "no device found ("
                    + reports.map {
                        "\($0.backend): \($0.unavailableReason ?? "no device")"
                    }.joined(separator: "; ") + ")")
        }
        let cache = KernelCache(directory: options.cacheDirectory)
        var devices: [Device] = []
        for backend in backends {
            devices.append(try Device(backend: backend, poolLimit: options.poolLimitPerDevice, cache: cache))
        }
        self.options = options
        self.devices = devices
        self.reports = reports
        self.catalog = catalog
        self.cache = cache
        self.broker = try DeviceBroker(
            devices: devices,
            policy: .init(
                maxConcurrentLaunches: options.maxConcurrentLaunchesPerDevice,
                failureThreshold: options.failureThreshold,
                probeInterval: options.probeInterval))
    }

    /// Runs `operation` on the best healthy device, retrying transient failures and falling back along
    /// `options.backendOrder` per the options.
    public func run<Input, Output>(_ operation: Operation<Input, Output>, _ input: Input) async throws(GPUBridgeError)
        -> Output
    {
        for id in operation.kernels { _ = try catalog.definition(id) }  // an unknown kernel is an error up front
        var attempts: [String] = []
        var tried: Set<DeviceID> = []
        let footprint = operation.footprint(input)
        while let lease = await broker.acquire(backends: options.backendOrder, excluding: tried, footprint: footprint) {
            let device = lease.device
            tried.insert(device.id)
            var activeLease: DeviceBroker.Lease? = lease
            attempts: for attempt in 1...options.attemptsPerDevice {
                let current: DeviceBroker.Lease
                if let held = activeLease {
                    current = held
                } else {
                    // A retry on the same device takes a fresh slot (its circuit may have opened meanwhile).
                    guard
                        let again = await broker.acquire(
                            backends: [device.id.backend],
                            excluding: Set(broker.devices.map(\.id)).subtracting([device.id]),
                            footprint: footprint)
                    else { break attempts }
                    current = again
                }
                activeLease = nil
                let result = await execute(operation, input, on: device)
                switch result {
                case let .success(output):
                    broker.release(current, succeeded: true)
                    if !attempts.isEmpty {
                        logger.info(
                            "request completed after failures",
                            metadata: [
                                "operation": "\(operation.name)", "device": "\(device.id)",
                                "attempts": "\(attempts.count + 1)",
                            ])
                    }
                    return output
                case let .failure(error):
                    let kind = classify(error)
                    broker.release(current, succeeded: false, countsAsFailure: kind == .transient || kind == .resource)
                    attempts.append("\(device.id) attempt \(attempt): \(error)")
                    Counter(label: "gpubridge_request_failures_total", dimensions: [("device", device.id.description)])
                        .increment()
                    if kind == .caller { throw error }  // the same input fails everywhere: report it as it is
                    logger.warning(
                        "attempt failed",
                        metadata: [
                            "operation": "\(operation.name)", "device": "\(device.id)", "attempt": "\(attempt)",
                            "error": "\(error)",
                        ])
                    if kind != .transient { break attempts }  // resource and unsupported errors go to the next device
                }
            }
            guard options.fallback else { break }
            logger.notice(
                "falling back to the next device", metadata: ["operation": "\(operation.name)", "from": "\(device.id)"])
            Counter(label: "gpubridge_fallbacks_total", dimensions: [("from", device.id.description)]).increment()
        }
        if attempts.isEmpty {
            throw .backendUnavailable(
                backend: options.backendOrder.map(\.rawValue).joined(separator: ","),
                reason: "no healthy device of these backends (all circuits open or none found)")
        }
        throw .allAttemptsFailed(operation: operation.name, attempts: attempts)
    }

    private func execute<Input, Output>(
        _ operation: Operation<Input, Output>, _ input: Input,
        on device: Device
    ) async -> Result<Output, GPUBridgeError> {
        let clock = ContinuousClock()
        let start = clock.now
        let result: Result<Output, GPUBridgeError>
        do {
            let output = try await withSpan("gpubridge.\(operation.name)", ofKind: .internal) { span in
                span.attributes["gpubridge.device"] = device.id.description
                span.attributes["gpubridge.device.name"] = device.info.name
                span.attributes["gpubridge.kernels"] = operation.kernels.joined(separator: ",")
                span.attributes["gpubridge.input.bytes"] = operation.footprint(input)
                do {
                    let output = try await operation.body(ExecutionContext(device: device, catalog: catalog), input)
                    span.attributes["gpubridge.duration.ns"] = Int((clock.now - start).nanoseconds)
                    return output
                } catch {
                    span.recordError(error)
                    throw error
                }
            }
            result = .success(output)
        } catch let error as GPUBridgeError {
            result = .failure(error)
        } catch {
            result = .failure(
                .backendFailure(
                    backend: device.id.backend.rawValue, call: operation.name, code: -1, message: "\(error)"))
        }
        Timer(
            label: "gpubridge_request_duration_seconds",
            dimensions: [("device", device.id.description), ("operation", operation.name)]
        )
        .recordNanoseconds((clock.now - start).nanoseconds)
        return result
    }

    private enum FailureKind { case caller, transient, resource, unsupportedHere }

    /// Caller errors are reported at once; transient device errors are retried; resource and unsupported errors move
    /// on to the next device.
    private func classify(_ error: GPUBridgeError) -> FailureKind {
        switch error {
        case .invalidArgument, .outOfBounds, .sizeMismatch, .argumentMismatch, .notFound, .wrongDevice:
            return .caller
        case .backendFailure, .io, .allAttemptsFailed:
            return .transient
        case .outOfMemory, .deviceLost:
            return .resource
        case .compilationFailed, .unsupported, .backendUnavailable, .invalidLaunch:
            return .unsupportedHere
        }
    }
}
