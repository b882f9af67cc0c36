import Dispatch
import GPUBridge

/// The context and the two command queues of one `OpenCLBackend`, released when the last holder lets go.
///
/// The backend is not the only holder: the launch tracker, its armed callbacks and its deferred `clFinish` use the
/// command queue after the call that enqueued the work has returned, and may run after the backend is gone (an event
/// callback that delivers the last completion releases the last buffer, the buffer its device, the device the
/// backend). Each of them holds this object, so the queue and the context outlive every path that touches them.
///
/// Ownership: shared by `OpenCLBackend` and `OpenCLLaunchTracker` (and, through it, every pending callback and worker
/// job). Thread safety: immutable; OpenCL objects are thread-safe. Cost: nothing per command. The release itself is
/// handed to a Dispatch worker: the last reference may go on the driver's callback thread, where a call that may wait
/// for the queue (`clReleaseCommandQueue` flushes it) does not belong.
final class OpenCLQueues: Sendable {
    let library: OpenCLLibrary
    let context: CLObject
    /// The in-order queue every copy, fill and launch goes through.
    let queue: CLObject
    /// The queue that maps and unmaps pinned host memory only.
    let hostQueue: CLObject

    init(library: OpenCLLibrary, context: CLObject, queue: CLObject, hostQueue: CLObject) {
        self.library = library
        self.context = context
        self.queue = queue
        self.hostQueue = hostQueue
    }

    deinit {
        let library = library, context = context, queue = queue, hostQueue = hostQueue
        DispatchQueue.global().async {
            // A queue is deleted once its commands have finished; the context once its queues and objects are gone.
            _ = library.releaseCommandQueue(hostQueue.pointer)
            _ = library.releaseCommandQueue(queue.pointer)
            _ = library.releaseContext(context.pointer)
        }
    }
}
