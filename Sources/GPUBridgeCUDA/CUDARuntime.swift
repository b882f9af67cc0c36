import GPUBridge
import Synchronization

/// Runs jobs that may wait for the device (frees, module unloads, host unregistrations) on one housekeeping thread,
/// and counts those not yet run, so an allocation that failed for want of memory can wait for them and retry.
///
/// Ownership: the runtime and the staging pool hold it; its thread stops when it goes, after every queued job.
/// Thread safety: any thread. Cost: a submit is one lock and a semaphore signal.
final class CUDAReleaser: Sendable {
    private let worker: CUDAWorkerThread
    private let pending = Atomic<Int>(0)

    init(worker: CUDAWorkerThread) { self.worker = worker }

    deinit { worker.stop() }

    /// Runs `job` on the housekeeping thread after everything queued there before it.
    func later(_ job: @escaping @Sendable () -> Void) {
        pending.add(1, ordering: .relaxed)
        worker.submit { [self] in
            job()
            pending.subtract(1, ordering: .releasing)
        }
    }

    /// Whether jobs are queued that have not run yet.
    var hasPending: Bool { pending.load(ordering: .acquiring) > 0 }

    /// Blocks the calling thread until every job queued before this call has run (never call it from the
    /// housekeeping thread itself).
    func drain() { worker.drain() }

    /// Runs `call`; when the driver reports `CUDA_ERROR_OUT_OF_MEMORY` while frees are still queued, lets them reach
    /// the driver and runs it once more.
    func retryingOutOfMemory(_ call: () -> CU.Result) -> CU.Result {
        let status = call()
        guard status == CU.errorOutOfMemory, hasPending else { return status }
        drain()
        return call()
    }
}

/// The parts of a CUDA device that cost something to hold: the primary context (it takes hundreds of MB of device
/// memory once created), one non-blocking stream and completion thread per lane, the housekeeping thread and the
/// staging pool. `CUDABackend` opens them on first use, not when the device is listed.
///
/// Ownership: the backend holds it for its life; lanes, programs and queued jobs hold what they use. Thread safety:
/// immutable after init. Cost: opening is about 0.3 s per GPU (context creation), once.
final class CUDARuntime: Sendable {
    let context: CUDAContext
    let lanes: [CUDAStreamLane]
    let releaser: CUDAReleaser
    let staging: CUDAStagingPool
    private let nextLaneIndex = Atomic<Int>(0)

    init(driver: CUDADriver, device: CU.Device, ordinal: Int, streams: Int, health: CUDAHealth)
        throws(GPUBridgeError)
    {
        let context = try CUDAContext(driver: driver, device: device, health: health)
        self.context = context
        var lanes: [CUDAStreamLane] = []
        for index in 0..<streams {
            lanes.append(try CUDAStreamLane(context: context, index: index, ordinal: ordinal, health: health))
        }
        self.lanes = lanes
        let worker: CUDAWorkerThread
        do {
            worker = try CUDAWorkerThread(name: "cuda\(ordinal)-release") { [context] in
                _ = try? context.makeCurrent()
            }
        } catch {
            throw .backendFailure(
                backend: "cuda", call: "pthread_create", code: Int(error.code),
                message: "could not start the housekeeping thread of cuda:\(ordinal)")
        }
        let releaser = CUDAReleaser(worker: worker)
        self.releaser = releaser
        staging = CUDAStagingPool(driver: driver, health: health) { job in releaser.later(job) }
    }

    /// The stream the next command goes to (round-robin).
    func nextLane() -> CUDAStreamLane {
        if lanes.count == 1 { return lanes[0] }
        let ticket = nextLaneIndex.wrappingAdd(1, ordering: .relaxed).oldValue
        return lanes[Int(UInt(bitPattern: ticket) % UInt(lanes.count))]
    }
}
