import GPUBridge
import Logging
import Synchronization

/// A kernel declaring `LibraryRoutine.sgemm`, loaded on a CUDA device where cuBLAS was found: a launch of the
/// routine's shape runs `cublasSgemm_v2` on the launch's stream; any other launch runs the compiled kernel.
///
/// Row-major `C = A * B` is column-major `C^T = B^T * A^T`, so the call is `sgemm(N, N, n, m, k, 1, B, n, A, k, 0, C,
/// n)` on the same bytes: nothing is transposed or copied. Each stream gets its own cuBLAS handle, made on first use
/// there with the device's primary context current and used only under that stream's submission lock (a handle is not
/// safe to share between threads that set different streams). If a handle cannot be made (no driver cuBLAS
/// supports, an architecture it lacks), that is logged once and this program runs the compiled kernel from then on.
///
/// Made by `CUDABackend.load`. Ownership: `Device` and `Kernel` hold it, and every launch's completion holds it until
/// the work has finished; its handles are destroyed on the backend's housekeeping thread. Thread safety: any thread.
/// Cost of a launch: one `cublasSetStream_v2` and one `cublasSgemm_v2` between the lane's two events.
public final class CUDALibraryGEMM: KernelProgram {
    let kernel: CUDAProgram
    public let library: CUBLASLibrary
    private let backend: CUDABackend
    private let state = Mutex(State())

    private struct State {
        /// One handle per stream lane, by lane index.
        var handles: [Int: CUHandle] = [:]
        /// The context the handles were made in (every lane's is the device's primary context).
        var context: CUDAContext?
        var refusal: String?
        var libraryLaunches = 0
    }

    init(kernel: CUDAProgram, backend: CUDABackend, library: CUBLASLibrary) {
        self.kernel = kernel
        self.backend = backend
        self.library = library
    }

    deinit {
        let (handles, context) = state.withLock { (Array($0.handles.values), $0.context) }
        guard !handles.isEmpty, let context else { return }
        let destroy = library.destroy
        backend.releaseLater {
            _ = try? context.makeCurrent()
            for handle in handles { _ = destroy(handle.pointer) }
        }
    }

    public var entryPoint: String { kernel.entryPoint }
    public var parameterCount: Int? { kernel.parameterCount }

    /// How many launches cuBLAS ran (the rest ran the compiled kernel).
    public var libraryLaunches: Int { state.withLock { $0.libraryLaunches } }
    /// Why cuBLAS is no longer used for this kernel, when it could not be set up on the device.
    public var libraryRefusal: String? { state.withLock { $0.refusal } }

    public func enqueue(_ launch: Launch, arguments: [ResolvedArgument]) throws(GPUBridgeError) -> Completion {
        guard state.withLock({ $0.refusal == nil }), let gemm = SGEMMArguments(launch, arguments) else {
            return try kernel.enqueue(launch, arguments: arguments)
        }
        try gemm.checkSizes(kernel: entryPoint)
        let runtime = try backend.runtime()
        let lane = runtime.nextLane()
        guard let handle = try handle(for: lane) else { return try kernel.enqueue(launch, arguments: arguments) }
        let library = library
        let (a, b, c) = (
            CUDAArgumentPacking.devicePointer(gemm.a), CUDAArgumentPacking.devicePointer(gemm.b),
            CUDAArgumentPacking.devicePointer(gemm.c)
        )
        let (m, n, k) = (Int32(gemm.m), Int32(gemm.n), Int32(gemm.k))
        let label = "cublasSgemm_v2 for kernel '\(entryPoint)'"
        let completion = try lane.submit(label, retaining: [self]) { command throws(GPUBridgeError) in
            var status = library.setStream(handle.pointer, command.stream)
            guard status == 0 else {
                throw .backendFailure(
                    backend: "cuda", call: "cublasSetStream_v2", code: Int(status),
                    message: CUBLASLibrary.statusName(status))
            }
            var one: Float = 1
            var zero: Float = 0
            status = library.sgemm(
                handle.pointer, CUBLASLibrary.noTranspose, CUBLASLibrary.noTranspose, n, m, k, &one, b, n, a, k,
                &zero, c, n)
            guard status == 0 else {
                throw .backendFailure(
                    backend: "cuda", call: "cublasSgemm_v2", code: Int(status),
                    message: "\(CUBLASLibrary.statusName(status)) (M, N, K = \(m), \(n), \(k))")
            }
        }
        state.withLock { $0.libraryLaunches += 1 }
        backend.counters.recordLaunch()
        return completion
    }

    /// The lane's handle, made on first use; nil (and the program falls back for good) when it cannot be made.
    private func handle(for lane: CUDAStreamLane) throws(GPUBridgeError) -> CUHandle? {
        if let handle = state.withLock({ $0.handles[lane.index] }) { return handle }
        try lane.context.makeCurrent()
        var created: OpaquePointer?
        let status = library.create(&created)
        guard status == 0, let created else {
            let reason = "cublasCreate_v2 returned \(CUBLASLibrary.statusName(status)) on \(backend.info.id)"
            state.withLock { $0.refusal = $0.refusal ?? reason }
            Logger(label: "gpubridge.cuda").warning(
                "cuBLAS cannot run on the device; matmul runs the built-in kernel",
                metadata: ["kernel": "\(entryPoint)", "reason": "\(reason)"])
            return nil
        }
        let (chosen, redundant) = state.withLock { s -> (CUHandle, CUHandle?) in
            if let existing = s.handles[lane.index] { return (existing, CUHandle(created)) }
            s.handles[lane.index] = CUHandle(created)
            s.context = lane.context
            return (CUHandle(created), nil)
        }
        if let redundant { _ = library.destroy(redundant.pointer) }
        return chosen
    }
}
