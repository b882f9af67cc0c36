import GPUBridge
import Synchronization

/// A kernel loaded on one OpenCL device, ready to launch: a `cl_program` and the `cl_kernel` of its entry point.
///
/// Made by `OpenCLBackend.load` (through `Device.compile`). Thread safety: any task may launch it; `clSetKernelArg`
/// on a shared `cl_kernel` is the one OpenCL call that is not thread-safe, so setting the arguments and enqueueing
/// happen together under this program's lock (the arguments are captured at enqueue, so the next launch may set its
/// own right after). Cost of a launch: one `clSetKernelArg` per argument, one `clEnqueueNDRangeKernel`, one
/// `clSetEventCallback` and one `clFlush`; no buffer is made and nothing is copied.
public final class OpenCLProgram: KernelProgram {
    public let entryPoint: String
    /// The kernel's name in GPUBridge (`KernelSource.name`).
    public let name: String
    /// `CL_KERNEL_NUM_ARGS`.
    public let parameterCount: Int?
    /// `CL_KERNEL_WORK_GROUP_SIZE`: the most work-items per group this kernel can run with on this device (may be
    /// less than the device's limit, for kernels that use many registers or much local memory).
    public let maxGroupItems: Int
    let backend: OpenCLBackend
    private let program: CLObject
    private let kernel: Mutex<KernelHandle>

    /// The `cl_kernel`. Deliberately not `Sendable`: it is only reached through the program's `Mutex`.
    private struct KernelHandle {
        let pointer: OpaquePointer
    }

    init(
        backend: OpenCLBackend, program: CLObject, kernel: sending OpaquePointer, name: String, entryPoint: String,
        parameterCount: Int, maxGroupItems: Int
    ) {
        self.backend = backend
        self.program = program
        self.kernel = Mutex(KernelHandle(pointer: kernel))
        self.name = name
        self.entryPoint = entryPoint
        self.parameterCount = parameterCount
        self.maxGroupItems = maxGroupItems
    }

    deinit {
        let library = backend.library
        kernel.withLock { _ = library.releaseKernel($0.pointer) }
        _ = library.releaseProgram(program.pointer)
    }

    /// Sets the arguments in declared order (a buffer as its `cl_mem`, or its region's cached sub-buffer; a scalar as
    /// its bytes), enqueues an NDRange of `groups * groupSize` work-items in groups of `groupSize`, and returns a
    /// completion that the event's callback signals with the device's timings.
    ///
    /// `launch.sharedMemoryBytes` must be 0: OpenCL local memory is declared in the kernel (a `__local` array) or as
    /// a `__local` parameter, not added to a launch.
    public func enqueue(_ launch: Launch, arguments: [ResolvedArgument]) throws(GPUBridgeError) -> Completion {
        guard launch.sharedMemoryBytes == 0 else {
            throw .unsupported(
                feature:
                    "Launch.sharedMemoryBytes (\(launch.sharedMemoryBytes) bytes) for '\(name)'; declare OpenCL local memory in the kernel (a __local array) or as a __local parameter",
                backend: "opencl")
        }
        if let parameterCount, arguments.count != parameterCount {
            throw .argumentMismatch(
                kernel: name,
                detail:
                    "the compiled kernel takes \(parameterCount) arguments (CL_KERNEL_NUM_ARGS), got \(arguments.count)"
            )
        }
        guard let items = launch.groupSize.product, items <= maxGroupItems else {
            throw .invalidLaunch(
                name: "groupSize", value: launch.groupSize.description,
                limit:
                    "at most \(maxGroupItems) items per group for kernel '\(name)' on \(backend.info.id) (CL_KERNEL_WORK_GROUP_SIZE)"
            )
        }
        guard let global = launch.globalSize, global.product != nil else {
            throw .invalidLaunch(
                name: "groups * groupSize", value: "\(launch.groups) * \(launch.groupSize)",
                limit: "a total work-item count that fits in \(Int.max)")
        }
        let dimensions = UInt32(min(3, max(1, global.dimensions)))
        let backend = backend
        let library = backend.library
        let queue = backend.queue
        let name = name
        let completion = try kernel.withLock { handle throws(GPUBridgeError) -> Completion in
            var retained: [OpaquePointer] = []
            defer { for sub in retained { _ = library.releaseMemObject(sub) } }
            for (index, argument) in arguments.enumerated() {
                let status: Int32
                switch argument {
                case let .memory(region):
                    let (memory, isRetained) = try backend.kernelMemory(for: region)
                    if isRetained { retained.append(memory) }
                    var value: OpaquePointer? = memory
                    status = library.setKernelArg(
                        handle.pointer, UInt32(index), MemoryLayout<OpaquePointer?>.size, &value)
                case let .scalar(value):
                    status = value.withUnsafeBytes {
                        library.setKernelArg(handle.pointer, UInt32(index), $0.count, $0.baseAddress)
                    }
                }
                guard status == CL.success else {
                    throw Self.argumentError(status, index: index, argument: argument, kernel: name)
                }
            }
            let outcome = withUnsafeTemporaryAllocation(of: Int.self, capacity: 6) {
                sizes -> OpenCLLaunchTracker.Outcome in
                sizes.initialize(repeating: 1)
                sizes[0] = global.x; sizes[1] = global.y; sizes[2] = global.z
                sizes[3] = launch.groupSize.x; sizes[4] = launch.groupSize.y; sizes[5] = launch.groupSize.z
                guard let base = sizes.baseAddress else { return .refused(CL.outOfHostMemory) }
                // Enqueued and tracked under the tracker's lock, so completions follow the queue's order.
                return backend.launches.enqueue { event in
                    library.enqueueNDRangeKernel(
                        queue.pointer, handle.pointer, dimensions, nil, base, base + 3, 0, nil, event)
                }
            }
            switch outcome {
            case let .enqueued(completion):
                return completion
            case let .refused(status):
                throw Self.launchError(status, launch: launch, kernel: name, device: backend.info.id)
            case .untracked:
                throw .backendFailure(
                    backend: "opencl", call: "clEnqueueNDRangeKernel", code: 0,
                    message:
                        "CL_SUCCESS but no event returned for kernel '\(name)'; the queue was finished and the launch's outcome is unknown"
                )
            }
        }
        backend.counters.recordLaunch()
        return completion
    }

    private static func argumentError(_ status: Int32, index: Int, argument: ResolvedArgument, kernel: String)
        -> GPUBridgeError
    {
        switch status {
        case CL.invalidArgSize, CL.invalidArgValue, CL.invalidArgIndex:
            let given: String
            switch argument {
            case let .memory(region): given = "a buffer (\(region))"
            case let .scalar(value): given = "\(value), \(value.type.byteSize) bytes"
            }
            return .argumentMismatch(
                kernel: kernel,
                detail:
                    "clSetKernelArg(\(index)) returned \(openCLStatusName(status)): the kernel's parameter \(index) does not take \(given)"
            )
        default:
            return .openCL("clSetKernelArg", status)
        }
    }

    private static func launchError(_ status: Int32, launch: Launch, kernel: String, device: DeviceID) -> GPUBridgeError
    {
        switch status {
        case CL.invalidWorkGroupSize, CL.invalidWorkItemSize:
            return .invalidLaunch(
                name: "groupSize", value: launch.groupSize.description,
                limit:
                    "what kernel '\(kernel)' accepts on \(device) (clEnqueueNDRangeKernel returned \(openCLStatusName(status)))"
            )
        case CL.invalidKernelArgs:
            return .argumentMismatch(
                kernel: kernel,
                detail: "clEnqueueNDRangeKernel returned CL_INVALID_KERNEL_ARGS: not every argument is set")
        default:
            return .openCL("clEnqueueNDRangeKernel", status)
        }
    }
}
