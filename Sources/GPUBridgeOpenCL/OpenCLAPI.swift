import Glibc
import Synchronization

// The slice of the OpenCL 1.2 C API this backend uses, declared in Swift so that the package needs no OpenCL headers
// and no OpenCL library at build time. `libOpenCL.so.1` (the ICD loader) is opened at run time with `dlopen`, and
// each function is resolved once with `dlsym` into `OpenCLLibrary`.
//
// C type mapping (LP64 Linux): cl_int = Int32, cl_uint / cl_bool / *_info = UInt32, cl_ulong / cl_bitfield = UInt64,
// size_t = Int (same width; values are never negative), object handles (cl_platform_id, cl_device_id, cl_context,
// cl_command_queue, cl_mem, cl_program, cl_kernel, cl_event) = OpaquePointer.

/// `@convention(c)` signatures of the OpenCL entry points, named after the C functions without the `cl` prefix.
enum CLFunction {
    typealias GetPlatformIDs =
        @convention(c) (UInt32, UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<UInt32>?) -> Int32
    typealias GetInfo =
        @convention(c) (OpaquePointer?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
    typealias GetObjectInfo =
        @convention(c) (
            OpaquePointer?, OpaquePointer?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?
        ) -> Int32
    typealias GetDeviceIDs =
        @convention(c) (
            OpaquePointer?, UInt64, UInt32, UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<UInt32>?
        ) -> Int32
    typealias ContextNotify =
        @convention(c) (UnsafePointer<CChar>?, UnsafeRawPointer?, Int, UnsafeMutableRawPointer?) -> Void
    typealias CreateContext =
        @convention(c) (
            UnsafePointer<Int>?, UInt32, UnsafePointer<OpaquePointer?>?, ContextNotify?, UnsafeMutableRawPointer?,
            UnsafeMutablePointer<Int32>?
        ) -> OpaquePointer?
    /// clRetain* / clRelease* / clFlush / clFinish: one object in, a status out.
    typealias ObjectCall = @convention(c) (OpaquePointer?) -> Int32
    typealias CreateCommandQueue =
        @convention(c) (OpaquePointer?, OpaquePointer?, UInt64, UnsafeMutablePointer<Int32>?) -> OpaquePointer?
    typealias CreateBuffer =
        @convention(c) (OpaquePointer?, UInt64, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) ->
        OpaquePointer?
    typealias CreateSubBuffer =
        @convention(c) (OpaquePointer?, UInt64, UInt32, UnsafeRawPointer?, UnsafeMutablePointer<Int32>?) ->
        OpaquePointer?
    typealias EnqueueReadBuffer =
        @convention(c) (
            OpaquePointer?, OpaquePointer?, UInt32, Int, Int, UnsafeMutableRawPointer?, UInt32,
            UnsafePointer<OpaquePointer?>?, UnsafeMutablePointer<OpaquePointer?>?
        ) -> Int32
    typealias EnqueueWriteBuffer =
        @convention(c) (
            OpaquePointer?, OpaquePointer?, UInt32, Int, Int, UnsafeRawPointer?, UInt32, UnsafePointer<OpaquePointer?>?,
            UnsafeMutablePointer<OpaquePointer?>?
        ) -> Int32
    typealias EnqueueCopyBuffer =
        @convention(c) (
            OpaquePointer?, OpaquePointer?, OpaquePointer?, Int, Int, Int, UInt32, UnsafePointer<OpaquePointer?>?,
            UnsafeMutablePointer<OpaquePointer?>?
        ) -> Int32
    typealias EnqueueFillBuffer =
        @convention(c) (
            OpaquePointer?, OpaquePointer?, UnsafeRawPointer?, Int, Int, Int, UInt32, UnsafePointer<OpaquePointer?>?,
            UnsafeMutablePointer<OpaquePointer?>?
        ) -> Int32
    typealias EnqueueMapBuffer =
        @convention(c) (
            OpaquePointer?, OpaquePointer?, UInt32, UInt64, Int, Int, UInt32, UnsafePointer<OpaquePointer?>?,
            UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<Int32>?
        ) -> UnsafeMutableRawPointer?
    typealias EnqueueUnmapMemObject =
        @convention(c) (
            OpaquePointer?, OpaquePointer?, UnsafeMutableRawPointer?, UInt32, UnsafePointer<OpaquePointer?>?,
            UnsafeMutablePointer<OpaquePointer?>?
        ) -> Int32
    typealias CreateProgramWithSource =
        @convention(c) (
            OpaquePointer?, UInt32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int>?,
            UnsafeMutablePointer<Int32>?
        ) -> OpaquePointer?
    typealias CreateProgramWithBinary =
        @convention(c) (
            OpaquePointer?, UInt32, UnsafePointer<OpaquePointer?>?, UnsafePointer<Int>?,
            UnsafePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?
        ) -> OpaquePointer?
    typealias BuildNotify = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void
    typealias BuildProgram =
        @convention(c) (
            OpaquePointer?, UInt32, UnsafePointer<OpaquePointer?>?, UnsafePointer<CChar>?, BuildNotify?,
            UnsafeMutableRawPointer?
        ) -> Int32
    typealias CreateKernel =
        @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<Int32>?) -> OpaquePointer?
    typealias SetKernelArg = @convention(c) (OpaquePointer?, UInt32, Int, UnsafeRawPointer?) -> Int32
    typealias EnqueueNDRangeKernel =
        @convention(c) (
            OpaquePointer?, OpaquePointer?, UInt32, UnsafePointer<Int>?, UnsafePointer<Int>?, UnsafePointer<Int>?,
            UInt32, UnsafePointer<OpaquePointer?>?, UnsafeMutablePointer<OpaquePointer?>?
        ) -> Int32
    typealias EventNotify = @convention(c) (OpaquePointer?, Int32, UnsafeMutableRawPointer?) -> Void
    typealias SetEventCallback = @convention(c) (OpaquePointer?, Int32, EventNotify?, UnsafeMutableRawPointer?) -> Int32
    typealias EnqueueMarkerWithWaitList =
        @convention(c) (OpaquePointer?, UInt32, UnsafePointer<OpaquePointer?>?, UnsafeMutablePointer<OpaquePointer?>?)
        -> Int32
}

/// OpenCL constants used here (values from the Khronos `CL/cl.h`).
enum CL {
    static let success: Int32 = 0
    static let `true`: UInt32 = 1
    static let `false`: UInt32 = 0

    // Status codes handled specially.
    static let deviceNotFound: Int32 = -1
    static let compilerNotAvailable: Int32 = -3
    static let memObjectAllocationFailure: Int32 = -4
    static let outOfResources: Int32 = -5
    static let outOfHostMemory: Int32 = -6
    static let buildProgramFailure: Int32 = -11
    static let invalidBuildOptions: Int32 = -43
    static let invalidKernelName: Int32 = -46
    static let invalidArgIndex: Int32 = -49
    static let invalidArgValue: Int32 = -50
    static let invalidArgSize: Int32 = -51
    static let invalidKernelArgs: Int32 = -52
    static let invalidWorkGroupSize: Int32 = -54
    static let invalidWorkItemSize: Int32 = -55
    static let platformNotFoundKHR: Int32 = -1001

    // cl_platform_info
    static let platformVersion: UInt32 = 0x0901
    static let platformName: UInt32 = 0x0902
    static let platformVendor: UInt32 = 0x0903

    // cl_device_type
    static let deviceTypeCPU: UInt64 = 1 << 1
    static let deviceTypeAll: UInt64 = 0xFFFF_FFFF

    // cl_device_info
    static let deviceType: UInt32 = 0x1000
    static let deviceMaxComputeUnits: UInt32 = 0x1002
    static let deviceMaxWorkItemDimensions: UInt32 = 0x1003
    static let deviceMaxWorkGroupSize: UInt32 = 0x1004
    static let deviceMaxWorkItemSizes: UInt32 = 0x1005
    static let deviceAddressBits: UInt32 = 0x100D
    static let deviceMaxMemAllocSize: UInt32 = 0x1010
    static let deviceMemBaseAddrAlign: UInt32 = 0x1019
    static let deviceGlobalMemSize: UInt32 = 0x101F
    static let deviceLocalMemSize: UInt32 = 0x1023
    static let deviceAvailable: UInt32 = 0x1027
    static let deviceQueueProperties: UInt32 = 0x102A
    static let deviceName: UInt32 = 0x102B
    static let deviceVendor: UInt32 = 0x102C
    static let driverVersion: UInt32 = 0x102D
    static let deviceVersion: UInt32 = 0x102F
    static let deviceExtensions: UInt32 = 0x1030
    static let deviceHostUnifiedMemory: UInt32 = 0x1035
    static let deviceOpenCLCVersion: UInt32 = 0x103D

    // cl_context_properties
    static let contextPlatform: Int = 0x1084

    // cl_command_queue_properties
    static let queueProfilingEnable: UInt64 = 1 << 1

    // cl_mem_flags, cl_map_flags, cl_buffer_create_type
    static let memReadWrite: UInt64 = 1 << 0
    static let memAllocHostPtr: UInt64 = 1 << 4
    static let mapRead: UInt64 = 1 << 0
    static let mapWrite: UInt64 = 1 << 1
    static let bufferCreateTypeRegion: UInt32 = 0x1220

    // cl_program_info, cl_program_build_info
    static let programBinarySizes: UInt32 = 0x1165
    static let programBinaries: UInt32 = 0x1166
    static let programKernelNames: UInt32 = 0x1168
    static let programBuildLog: UInt32 = 0x1183

    // cl_kernel_info, cl_kernel_work_group_info
    static let kernelNumArgs: UInt32 = 0x1191
    static let kernelWorkGroupSize: UInt32 = 0x11B0

    // Event status and profiling
    static let complete: Int32 = 0
    static let eventCommandExecutionStatus: UInt32 = 0x11D3
    static let profilingCommandQueued: UInt32 = 0x1280
    static let profilingCommandSubmit: UInt32 = 0x1281
    static let profilingCommandStart: UInt32 = 0x1282
    static let profilingCommandEnd: UInt32 = 0x1283
}

/// The OpenCL entry points of one loaded ICD loader library, resolved once.
///
/// Ownership: loaded libraries are kept for the life of the process (never `dlclose`d), because backends, programs
/// and pending event callbacks call into them until the very end. Thread safety: immutable; OpenCL 1.1 and later
/// make every entry point thread-safe except `clSetKernelArg` on one `cl_kernel` (see `OpenCLProgram`).
final class OpenCLLibrary: Sendable {
    /// The name given to `dlopen`.
    let name: String
    /// The file the loader resolved it to (from `dladdr`), or `name` where that is unknown.
    let path: String

    let getPlatformIDs: CLFunction.GetPlatformIDs
    let getPlatformInfo: CLFunction.GetInfo
    let getDeviceIDs: CLFunction.GetDeviceIDs
    let getDeviceInfo: CLFunction.GetInfo
    let createContext: CLFunction.CreateContext
    let releaseContext: CLFunction.ObjectCall
    let createCommandQueue: CLFunction.CreateCommandQueue
    let releaseCommandQueue: CLFunction.ObjectCall
    let flush: CLFunction.ObjectCall
    let finish: CLFunction.ObjectCall
    let createBuffer: CLFunction.CreateBuffer
    let createSubBuffer: CLFunction.CreateSubBuffer
    let retainMemObject: CLFunction.ObjectCall
    let releaseMemObject: CLFunction.ObjectCall
    let enqueueReadBuffer: CLFunction.EnqueueReadBuffer
    let enqueueWriteBuffer: CLFunction.EnqueueWriteBuffer
    let enqueueCopyBuffer: CLFunction.EnqueueCopyBuffer
    let enqueueFillBuffer: CLFunction.EnqueueFillBuffer
    let enqueueMapBuffer: CLFunction.EnqueueMapBuffer
    let enqueueUnmapMemObject: CLFunction.EnqueueUnmapMemObject
    let createProgramWithSource: CLFunction.CreateProgramWithSource
    let createProgramWithBinary: CLFunction.CreateProgramWithBinary
    let buildProgram: CLFunction.BuildProgram
    let getProgramInfo: CLFunction.GetInfo
    let getProgramBuildInfo: CLFunction.GetObjectInfo
    let releaseProgram: CLFunction.ObjectCall
    let createKernel: CLFunction.CreateKernel
    let getKernelInfo: CLFunction.GetInfo
    let getKernelWorkGroupInfo: CLFunction.GetObjectInfo
    let setKernelArg: CLFunction.SetKernelArg
    let releaseKernel: CLFunction.ObjectCall
    let enqueueNDRangeKernel: CLFunction.EnqueueNDRangeKernel
    let setEventCallback: CLFunction.SetEventCallback
    let getEventProfilingInfo: CLFunction.GetInfo
    let releaseEvent: CLFunction.ObjectCall
    let retainEvent: CLFunction.ObjectCall
    let getEventInfo: CLFunction.GetInfo
    let enqueueMarkerWithWaitList: CLFunction.EnqueueMarkerWithWaitList

    /// Why a library could not be used.
    enum LoadFailure: Error, Sendable, CustomStringConvertible {
        case open(name: String, error: String)
        case missingSymbol(name: String, path: String, symbol: String)

        var description: String {
            switch self {
            case let .open(name, error):
                return "could not load \(name): \(error)"
            case let .missingSymbol(name, path, symbol):
                return "\(name) (\(path)) has no \(symbol); an OpenCL 1.2 ICD loader is required"
            }
        }
    }

    private static let loaded = Mutex<[String: OpenCLLibrary]>([:])

    /// The library `name` (a soname or a path), opened once per process.
    static func load(_ name: String) -> Result<OpenCLLibrary, LoadFailure> {
        if let library = loaded.withLock({ $0[name] }) { return .success(library) }
        guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
            let message = dlerror().map { String(cString: $0) } ?? "dlopen returned NULL"
            return .failure(.open(name: name, error: message))
        }
        do {
            let library = try OpenCLLibrary(name: name, handle: handle)
            return .success(
                loaded.withLock { table in
                    if let existing = table[name] { return existing }
                    table[name] = library
                    return library
                })
        } catch {
            return .failure(error)
        }
    }

    /// The file mapped at `address` in this process, from `/proc/self/maps` (`dladdr` is not visible to Swift's
    /// Glibc module); nil where that cannot be read.
    static func mappedFile(containing address: UInt) -> String? {
        guard let file = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { Glibc.free(line) }
        while getline(&line, &capacity, file) > 0 {
            guard let line else { break }
            // "start-end perms offset dev inode   path"
            let text = String(cString: line)
            let fields = text.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6 else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16),
                address >= start, address < end
            else { continue }
            let path = fields[5].trimmingCharacters(in: " \n")
            return path.hasPrefix("/") ? path : nil
        }
        return nil
    }

    /// A copy of `other` with two entry points substituted: tests stand in for a driver that reports a terminated
    /// command this way (the library is loaded once per process, so the copy is never registered).
    init(
        copying other: OpenCLLibrary, enqueueNDRangeKernel: CLFunction.EnqueueNDRangeKernel,
        getEventInfo: CLFunction.GetInfo
    ) {
        name = other.name
        path = other.path
        getPlatformIDs = other.getPlatformIDs
        getPlatformInfo = other.getPlatformInfo
        getDeviceIDs = other.getDeviceIDs
        getDeviceInfo = other.getDeviceInfo
        createContext = other.createContext
        releaseContext = other.releaseContext
        createCommandQueue = other.createCommandQueue
        releaseCommandQueue = other.releaseCommandQueue
        flush = other.flush
        finish = other.finish
        createBuffer = other.createBuffer
        createSubBuffer = other.createSubBuffer
        retainMemObject = other.retainMemObject
        releaseMemObject = other.releaseMemObject
        enqueueReadBuffer = other.enqueueReadBuffer
        enqueueWriteBuffer = other.enqueueWriteBuffer
        enqueueCopyBuffer = other.enqueueCopyBuffer
        enqueueFillBuffer = other.enqueueFillBuffer
        enqueueMapBuffer = other.enqueueMapBuffer
        enqueueUnmapMemObject = other.enqueueUnmapMemObject
        createProgramWithSource = other.createProgramWithSource
        createProgramWithBinary = other.createProgramWithBinary
        buildProgram = other.buildProgram
        getProgramInfo = other.getProgramInfo
        getProgramBuildInfo = other.getProgramBuildInfo
        releaseProgram = other.releaseProgram
        createKernel = other.createKernel
        getKernelInfo = other.getKernelInfo
        getKernelWorkGroupInfo = other.getKernelWorkGroupInfo
        setKernelArg = other.setKernelArg
        releaseKernel = other.releaseKernel
        setEventCallback = other.setEventCallback
        getEventProfilingInfo = other.getEventProfilingInfo
        releaseEvent = other.releaseEvent
        retainEvent = other.retainEvent
        enqueueMarkerWithWaitList = other.enqueueMarkerWithWaitList
        self.enqueueNDRangeKernel = enqueueNDRangeKernel
        self.getEventInfo = getEventInfo
    }

    private init(name: String, handle: UnsafeMutableRawPointer) throws(LoadFailure) {
        self.name = name
        // The file the dynamic loader picked, for reports: the mapping that holds one of its functions.
        var resolvedPath = name
        if let symbol = dlsym(handle, "clGetPlatformIDs"),
            let file = Self.mappedFile(containing: UInt(bitPattern: symbol))
        {
            resolvedPath = file
        }
        self.path = resolvedPath
        func resolve<T>(_ symbol: String) throws(LoadFailure) -> T {
            guard let address = dlsym(handle, symbol) else {
                throw .missingSymbol(name: name, path: resolvedPath, symbol: symbol)
            }
            return unsafeBitCast(address, to: T.self)
        }
        getPlatformIDs = try resolve("clGetPlatformIDs")
        getPlatformInfo = try resolve("clGetPlatformInfo")
        getDeviceIDs = try resolve("clGetDeviceIDs")
        getDeviceInfo = try resolve("clGetDeviceInfo")
        createContext = try resolve("clCreateContext")
        releaseContext = try resolve("clReleaseContext")
        createCommandQueue = try resolve("clCreateCommandQueue")
        releaseCommandQueue = try resolve("clReleaseCommandQueue")
        flush = try resolve("clFlush")
        finish = try resolve("clFinish")
        createBuffer = try resolve("clCreateBuffer")
        createSubBuffer = try resolve("clCreateSubBuffer")
        retainMemObject = try resolve("clRetainMemObject")
        releaseMemObject = try resolve("clReleaseMemObject")
        enqueueReadBuffer = try resolve("clEnqueueReadBuffer")
        enqueueWriteBuffer = try resolve("clEnqueueWriteBuffer")
        enqueueCopyBuffer = try resolve("clEnqueueCopyBuffer")
        enqueueFillBuffer = try resolve("clEnqueueFillBuffer")
        enqueueMapBuffer = try resolve("clEnqueueMapBuffer")
        enqueueUnmapMemObject = try resolve("clEnqueueUnmapMemObject")
        createProgramWithSource = try resolve("clCreateProgramWithSource")
        createProgramWithBinary = try resolve("clCreateProgramWithBinary")
        buildProgram = try resolve("clBuildProgram")
        getProgramInfo = try resolve("clGetProgramInfo")
        getProgramBuildInfo = try resolve("clGetProgramBuildInfo")
        releaseProgram = try resolve("clReleaseProgram")
        createKernel = try resolve("clCreateKernel")
        getKernelInfo = try resolve("clGetKernelInfo")
        getKernelWorkGroupInfo = try resolve("clGetKernelWorkGroupInfo")
        setKernelArg = try resolve("clSetKernelArg")
        releaseKernel = try resolve("clReleaseKernel")
        enqueueNDRangeKernel = try resolve("clEnqueueNDRangeKernel")
        setEventCallback = try resolve("clSetEventCallback")
        getEventProfilingInfo = try resolve("clGetEventProfilingInfo")
        releaseEvent = try resolve("clReleaseEvent")
        retainEvent = try resolve("clRetainEvent")
        getEventInfo = try resolve("clGetEventInfo")
        enqueueMarkerWithWaitList = try resolve("clEnqueueMarkerWithWaitList")
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in characters: String) -> String {
        var text = self[...]
        while let first = text.first, characters.contains(first) { text = text.dropFirst() }
        while let last = text.last, characters.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
