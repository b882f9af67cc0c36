import Dispatch
import Synchronization

/// A Swift kernel ready to run on the CPU backend.
///
/// Owned by the `Kernel`s made from it; any thread may enqueue it. Each launch is one command on the backend's
/// `CPUCommandQueue`: small launches (by work-items, or by buffer bytes for `perByte` kernels) run in one chunk on the
/// calling thread when the queue is idle, larger ones on the queue's worker, split across the cores. A `threaded`
/// launch, whose body threads itself, runs in one call on the calling thread whenever the queue is idle.
final class CPUProgram: KernelProgram {
    let kernel: SwiftKernel
    let entryPoint: String
    /// The kernel's name, for errors.
    let name: String
    let backend: CPUBackend
    var parameterCount: Int? { nil }

    init(kernel: SwiftKernel, entryPoint: String, name: String, backend: CPUBackend) {
        self.kernel = kernel
        self.entryPoint = entryPoint
        self.name = name
        self.backend = backend
    }

    func enqueue(_ launch: Launch, arguments: [ResolvedArgument]) throws(GPUBridgeError) -> Completion {
        backend.counters.recordLaunch()
        let groupCount = launch.groups.x * launch.groups.y * launch.groups.z
        let items = groupCount * (launch.groupSize.x * launch.groupSize.y * launch.groupSize.z)
        let queued = monotonicNanoseconds()
        // A `threaded` body (one library call that threads itself) runs on the calling thread whenever the queue is
        // idle, whatever its size: the caller is already running, and the library's helpers are running or spinning,
        // so no thread has to be woken for it. A thread woken after a pause may be placed on a CPU that is already
        // busy (docs/PERFORMANCE.md, "One-core phases"), and the call then runs at one core's speed.
        let small =
            switch kernel.scheduling {
            case .threaded: true
            case .perItem, .perCore: items <= CPUBackend.inlineWorkItems
            case .perGroup: false
            case .perByte: Self.bufferBytes(arguments) <= CPUBackend.inlinePassBytes
            }
        let perCore = kernel.scheduling == .perCore ? 1 : 4
        let chunks =
            small || backend.cores == 1 || kernel.scheduling == .threaded
            ? 1 : min(groupCount, backend.cores * perCore)
        let completion = Completion()
        let body = kernel.body
        let name = name
        backend.queue.enqueue(inline: small) {
            let start = monotonicNanoseconds()
            let failure = FirstError()
            if chunks == 1 {
                do {
                    try body(
                        CPUKernelContext(kernel: name, arguments: arguments, launch: launch, groups: 0..<groupCount))
                } catch {
                    failure.record(Self.wrap(error, name))
                }
            } else {
                DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                    let lower = groupCount * chunk / chunks
                    let upper = groupCount * (chunk + 1) / chunks
                    guard lower < upper else { return }
                    do {
                        try body(
                            CPUKernelContext(kernel: name, arguments: arguments, launch: launch, groups: lower..<upper))
                    } catch {
                        failure.record(Self.wrap(error, name))
                    }
                }
            }
            let end = monotonicNanoseconds()
            if let error = failure.value {
                completion.complete(.failure(error))
            } else {
                completion.complete(.success(ExecutionTimings(queued: queued, start: start, end: end)))
            }
        }
        return completion
    }

    /// The bytes of the launch's buffer arguments.
    static func bufferBytes(_ arguments: [ResolvedArgument]) -> Int {
        var bytes = 0
        for case let .memory(region) in arguments { bytes += region.byteCount }
        return bytes
    }

    static func wrap(_ error: any Error, _ name: String) -> GPUBridgeError {
        if let error = error as? GPUBridgeError { return error }
        return .backendFailure(backend: "cpu", call: "kernel '\(name)'", code: -1, message: "\(error)")
    }
}

/// The first error seen by concurrent workers.
private final class FirstError: Sendable {
    private let storage = Mutex<GPUBridgeError?>(nil)
    func record(_ error: GPUBridgeError) { storage.withLock { if $0 == nil { $0 = error } } }
    var value: GPUBridgeError? { storage.withLock { $0 } }
}
