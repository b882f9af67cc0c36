import GPUBridge
import Logging
import Synchronization

/// A kernel declaring `LibraryRoutine.sgemm`, loaded on an OpenCL device where CLBlast was found: a launch of the
/// routine's shape runs `CLBlastSgemm` on the backend's queue; any other launch runs the compiled kernel.
///
/// Made by `OpenCLBackend.load`. Thread safety: any task may launch it; the CLBlast call and its tracking happen under
/// the launch tracker's lock, so completions follow the queue's order as for a kernel. If CLBlast refuses the device
/// with one of its own errors (it cannot build or tune its kernels there: a status below -1000 other than a size
/// error), that is logged once and this program runs the compiled kernel from then on. Cost of a launch: one
/// `CLBlastSgemm` (after the first, which compiles CLBlast's kernels for the device), one event tracked.
public final class OpenCLLibraryGEMM: KernelProgram {
    /// The compiled kernel: the fallback, and the one every launch outside the routine's shape runs.
    public let kernel: OpenCLProgram
    public let library: CLBlastLibrary
    private let state = Mutex(State())

    private struct State {
        var refusal: String?
        var libraryLaunches = 0
    }

    init(kernel: OpenCLProgram, library: CLBlastLibrary) {
        self.kernel = kernel
        self.library = library
    }

    public var entryPoint: String { kernel.entryPoint }
    public var parameterCount: Int? { kernel.parameterCount }

    /// How many launches CLBlast ran (the rest ran the compiled kernel).
    public var libraryLaunches: Int { state.withLock { $0.libraryLaunches } }
    /// Why CLBlast is no longer used for this kernel, when it refused the device.
    public var libraryRefusal: String? { state.withLock { $0.refusal } }

    public func enqueue(_ launch: Launch, arguments: [ResolvedArgument]) throws(GPUBridgeError) -> Completion {
        guard state.withLock({ $0.refusal == nil }), let gemm = SGEMMArguments(launch, arguments) else {
            return try kernel.enqueue(launch, arguments: arguments)
        }
        try gemm.checkSizes(kernel: kernel.name)
        let backend = kernel.backend
        let float = MemoryLayout<Float>.size
        // CLBlast takes the allocations and element offsets, so a view needs no sub-buffer; an offset that is not a
        // whole number of floats runs the kernel, which reports it.
        guard gemm.a.offset % float == 0, gemm.b.offset % float == 0, gemm.c.offset % float == 0 else {
            return try kernel.enqueue(launch, arguments: arguments)
        }
        let a = try backend.memoryObject(gemm.a), b = try backend.memoryObject(gemm.b)
        let c = try backend.memoryObject(gemm.c)
        let sgemm = library.sgemm
        var queue: OpaquePointer? = backend.queue.pointer
        let outcome = backend.launches.enqueue { event in
            sgemm(
                CLBlastLibrary.rowMajor, CLBlastLibrary.noTranspose, CLBlastLibrary.noTranspose, gemm.m, gemm.n,
                gemm.k, 1, a, gemm.a.offset / float, gemm.k, b, gemm.b.offset / float, gemm.n, 0, c,
                gemm.c.offset / float, gemm.n, &queue, event)
        }
        switch outcome {
        case let .enqueued(completion):
            state.withLock { $0.libraryLaunches += 1 }
            backend.counters.recordLaunch()
            return completion
        case let .refused(status) where Self.refusesDevice(status):
            let reason = "CLBlastSgemm returned \(CLBlastLibrary.statusName(status)) on \(backend.info.id)"
            state.withLock { $0.refusal = $0.refusal ?? reason }
            Logger(label: "gpubridge.opencl").warning(
                "CLBlast refused the device; matmul runs the built-in kernel",
                metadata: ["kernel": "\(kernel.name)", "reason": "\(reason)"])
            return try kernel.enqueue(launch, arguments: arguments)
        case let .refused(status):
            throw .backendFailure(
                backend: "opencl", call: "CLBlastSgemm", code: Int(status),
                message:
                    "\(CLBlastLibrary.statusName(status)) for kernel '\(kernel.name)' (M, N, K = \(gemm.m), \(gemm.n), \(gemm.k)) on \(backend.info.id)"
            )
        case .untracked:
            throw .backendFailure(
                backend: "opencl", call: "CLBlastSgemm", code: 0,
                message:
                    "CL_SUCCESS but no event returned for kernel '\(kernel.name)'; the queue was finished and the launch's outcome is unknown"
            )
        }
    }

    /// CLBlast's own statuses that say it cannot run on this device (not a bad argument, not an OpenCL error).
    static func refusesDevice(_ status: Int32) -> Bool {
        switch status {
        case -1024, -2046, -2041, -2040, -2039: true  // not implemented, local memory, database, unknown, unexpected
        case CL.buildProgramFailure, CL.compilerNotAvailable, -42, CL.invalidBuildOptions: true
        default: false
        }
    }
}
