import Dispatch
import GPUBridge

/// An OpenCL object handle (context, command queue, device, platform, memory object, program or event) held by value.
///
/// `@unchecked Sendable` is safe because the value is an immutable pointer, and OpenCL 1.1 and later make every API
/// call on these objects thread-safe (OpenCL 3.0 §A.2: all API calls are thread-safe except `clSetKernelArg` and
/// `clCloneKernel`). Kernels are never wrapped in this type: `OpenCLProgram` keeps its `cl_kernel` inside a `Mutex`.
/// Lifetimes belong to the owner that created the object and releases it (see each owner's `deinit`).
struct CLObject: @unchecked Sendable, Hashable {
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) { self.pointer = pointer }

    /// The handle as the `UInt64` the core stores in `DeviceRegion.handle`.
    var bits: UInt64 { UInt64(UInt(bitPattern: Int(bitPattern: pointer))) }

    /// The handle stored in `bits`, or nil for 0.
    init?(bits: UInt64) {
        guard let pointer = OpaquePointer(bitPattern: UInt(bits)) else { return nil }
        self.pointer = pointer
    }
}

/// What an event callback needs to finish one command: the completion to signal, what to keep alive until then, and
/// whether the queue records profiling times.
///
/// One box is created per enqueued command, passed retained through `clSetEventCallback`'s `user_data` and released
/// by the callback, which runs exactly once (OpenCL calls a `CL_COMPLETE` callback once, on success or abnormal
/// termination).
final class EventCompletion: Sendable {
    let completion: Completion
    let library: OpenCLLibrary
    let call: String
    let profiling: Bool
    /// Host memory (or its owner) the command reads or writes; released only after the command completed.
    let owner: (any Sendable)?

    init(completion: Completion, library: OpenCLLibrary, call: String, profiling: Bool, owner: (any Sendable)?) {
        self.completion = completion
        self.library = library
        self.call = call
        self.profiling = profiling
        self.owner = owner
    }

    /// Reads the command's timings, releases the event and signals the completion.
    ///
    /// Runs on the OpenCL implementation's callback thread. Only non-blocking calls are made here
    /// (`clGetEventProfilingInfo`, `clReleaseEvent`), as the specification requires of callbacks. When the box keeps an
    /// owner alive, the completion is signalled (and the owner let go) on a Dispatch worker instead: the owner's
    /// `deinit` may call back into OpenCL (a `HostBuffer` unmaps and releases its pinned memory), which does not belong
    /// on the driver's thread.
    func finish(event: OpaquePointer?, status: Int32) {
        let result: Result<ExecutionTimings?, GPUBridgeError>
        if status < 0 {
            result = .failure(.openCL("\(call) (command terminated)", status))
        } else {
            result = .success(profiling ? event.flatMap(timings) : nil)
        }
        if let event { _ = library.releaseEvent(event) }
        if owner == nil {
            completion.complete(result)
        } else {
            DispatchQueue.global().async { self.completion.complete(result) }
        }
    }

    /// Queued / submitted / start / end on the device clock, or nil where the driver does not report them.
    private func timings(_ event: OpaquePointer) -> ExecutionTimings? {
        func read(_ parameter: UInt32) -> UInt64? {
            var value: UInt64 = 0
            let status = library.getEventProfilingInfo(event, parameter, MemoryLayout<UInt64>.size, &value, nil)
            return status == CL.success ? value : nil
        }
        guard let start = read(CL.profilingCommandStart), let end = read(CL.profilingCommandEnd) else { return nil }
        return ExecutionTimings(
            queued: read(CL.profilingCommandQueued), submitted: read(CL.profilingCommandSubmit),
            start: start, end: end)
    }
}

/// The `CL_COMPLETE` callback of every command this backend tracks: takes back the box passed as `user_data` and
/// finishes it.
let openCLEventCallback: CLFunction.EventNotify = { event, status, userData in
    guard let userData else { return }
    let box = Unmanaged<EventCompletion>.fromOpaque(userData).takeRetainedValue()
    box.finish(event: event, status: status)
}
