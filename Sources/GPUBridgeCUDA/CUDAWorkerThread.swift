import Dispatch
import Glibc
import Synchronization

/// A dedicated OS thread that runs jobs one at a time, in the order they were submitted.
///
/// The CUDA backend uses these for everything that blocks on the device: waiting for a stream's events (completion
/// threads) and freeing memory or modules (`cuMemFree` and `cuModuleUnload` may wait for the device). Swift's
/// cooperative threads never block on the GPU; they only append a job here.
///
/// Ownership: the thread keeps its own reference to the queue until it has run `stop`'s final job, so dropping the
/// worker never loses submitted work. Thread safety: `submit` and `stop` may be called from any thread. Cost: a
/// submit is one lock, an append and a semaphore signal.
final class CUDAWorkerThread: Sendable {
    private enum Job: Sendable {
        case run(@Sendable () -> Void)
        case stop(@Sendable () -> Void)
    }

    /// What the thread and the submitters share.
    private final class Queue: Sendable {
        let jobs = Mutex<(items: [Job?], head: Int)>(([], 0))
        let available = DispatchSemaphore(value: 0)
        let setup: @Sendable () -> Void

        init(setup: @escaping @Sendable () -> Void) { self.setup = setup }

        func push(_ job: Job) {
            jobs.withLock { $0.items.append(job) }
            available.signal()
        }

        func pop() -> Job {
            available.wait()
            return jobs.withLock { queue -> Job in
                // One signal per pushed job, so there is one; the slot is cleared so the queue does not keep the
                // job's captures (and what they own) alive after it ran.
                let job = queue.items[queue.head] ?? .run({})
                queue.items[queue.head] = nil
                queue.head += 1
                if queue.head >= 64, queue.head * 2 >= queue.items.count {
                    queue.items.removeFirst(queue.head)
                    queue.head = 0
                }
                return job
            }
        }

        /// The thread's body: `setup`, then jobs until `stop`.
        func run() {
            setup()
            while true {
                switch pop() {
                case let .run(body):
                    body()
                case let .stop(final):
                    final()
                    return
                }
            }
        }
    }

    private let queue: Queue
    private let stopped = Atomic<Bool>(false)
    let name: String

    /// Starts a thread named `name` (at most 15 characters are kept) that first runs `setup` (for example making a
    /// CUDA context current), then the submitted jobs.
    init(name: String, setup: @escaping @Sendable () -> Void) throws(GPUBridgeThreadError) {
        self.name = name
        queue = Queue(setup: setup)
        let context = Unmanaged.passRetained(queue).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(
            &thread, nil,
            { argument in
                guard let argument else { return nil }
                let queue = Unmanaged<CUDAWorkerThread.Queue>.fromOpaque(argument).takeRetainedValue()
                queue.run()
                return nil
            }, context)
        guard status == 0 else {
            Unmanaged<Queue>.fromOpaque(context).release()
            throw GPUBridgeThreadError(name: name, code: status)
        }
        Self.setName(thread, String(name.prefix(15)))
        pthread_detach(thread)
    }

    private typealias SetName = @convention(c) (pthread_t, UnsafePointer<CChar>?) -> Int32

    /// Names the thread for debuggers and `top -H` (`pthread_setname_np` is a GNU extension the Glibc module does not
    /// export, so it is looked up in libc).
    private static func setName(_ thread: pthread_t, _ name: String) {
        guard let symbol = dlsym(nil, "pthread_setname_np") else { return }
        _ = unsafeBitCast(symbol, to: SetName.self)(thread, name)
    }

    /// Runs `job` on the thread after every job submitted before it.
    func submit(_ job: @escaping @Sendable () -> Void) {
        queue.push(.run(job))
    }

    /// Runs `final` after every job submitted so far, then ends the thread. Later calls are ignored.
    func stop(_ final: @escaping @Sendable () -> Void = {}) {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.push(.stop(final))
    }

    /// Blocks the calling thread until every job submitted before this call has run. For callers that may block
    /// (an allocation that needs deferred frees to finish first); never call it from the worker itself.
    func drain() {
        let done = DispatchSemaphore(value: 0)
        submit { done.signal() }
        done.wait()
    }
}

/// `pthread_create` failed.
struct GPUBridgeThreadError: Error, Sendable {
    let name: String
    let code: Int32
}
