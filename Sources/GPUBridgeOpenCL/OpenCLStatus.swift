import GPUBridge

/// The name of an OpenCL status code as `CL/cl.h` (and `cl_ext.h` for the ICD loader's codes) spells it.
public func openCLStatusName(_ status: Int32) -> String {
    switch status {
    case 0: return "CL_SUCCESS"
    case -1: return "CL_DEVICE_NOT_FOUND"
    case -2: return "CL_DEVICE_NOT_AVAILABLE"
    case -3: return "CL_COMPILER_NOT_AVAILABLE"
    case -4: return "CL_MEM_OBJECT_ALLOCATION_FAILURE"
    case -5: return "CL_OUT_OF_RESOURCES"
    case -6: return "CL_OUT_OF_HOST_MEMORY"
    case -7: return "CL_PROFILING_INFO_NOT_AVAILABLE"
    case -8: return "CL_MEM_COPY_OVERLAP"
    case -9: return "CL_IMAGE_FORMAT_MISMATCH"
    case -10: return "CL_IMAGE_FORMAT_NOT_SUPPORTED"
    case -11: return "CL_BUILD_PROGRAM_FAILURE"
    case -12: return "CL_MAP_FAILURE"
    case -13: return "CL_MISALIGNED_SUB_BUFFER_OFFSET"
    case -14: return "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST"
    case -15: return "CL_COMPILE_PROGRAM_FAILURE"
    case -16: return "CL_LINKER_NOT_AVAILABLE"
    case -17: return "CL_LINK_PROGRAM_FAILURE"
    case -18: return "CL_DEVICE_PARTITION_FAILED"
    case -19: return "CL_KERNEL_ARG_INFO_NOT_AVAILABLE"
    case -30: return "CL_INVALID_VALUE"
    case -31: return "CL_INVALID_DEVICE_TYPE"
    case -32: return "CL_INVALID_PLATFORM"
    case -33: return "CL_INVALID_DEVICE"
    case -34: return "CL_INVALID_CONTEXT"
    case -35: return "CL_INVALID_QUEUE_PROPERTIES"
    case -36: return "CL_INVALID_COMMAND_QUEUE"
    case -37: return "CL_INVALID_HOST_PTR"
    case -38: return "CL_INVALID_MEM_OBJECT"
    case -39: return "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR"
    case -40: return "CL_INVALID_IMAGE_SIZE"
    case -41: return "CL_INVALID_SAMPLER"
    case -42: return "CL_INVALID_BINARY"
    case -43: return "CL_INVALID_BUILD_OPTIONS"
    case -44: return "CL_INVALID_PROGRAM"
    case -45: return "CL_INVALID_PROGRAM_EXECUTABLE"
    case -46: return "CL_INVALID_KERNEL_NAME"
    case -47: return "CL_INVALID_KERNEL_DEFINITION"
    case -48: return "CL_INVALID_KERNEL"
    case -49: return "CL_INVALID_ARG_INDEX"
    case -50: return "CL_INVALID_ARG_VALUE"
    case -51: return "CL_INVALID_ARG_SIZE"
    case -52: return "CL_INVALID_KERNEL_ARGS"
    case -53: return "CL_INVALID_WORK_DIMENSION"
    case -54: return "CL_INVALID_WORK_GROUP_SIZE"
    case -55: return "CL_INVALID_WORK_ITEM_SIZE"
    case -56: return "CL_INVALID_GLOBAL_OFFSET"
    case -57: return "CL_INVALID_EVENT_WAIT_LIST"
    case -58: return "CL_INVALID_EVENT"
    case -59: return "CL_INVALID_OPERATION"
    case -60: return "CL_INVALID_GL_OBJECT"
    case -61: return "CL_INVALID_BUFFER_SIZE"
    case -62: return "CL_INVALID_MIP_LEVEL"
    case -63: return "CL_INVALID_GLOBAL_WORK_SIZE"
    case -64: return "CL_INVALID_PROPERTY"
    case -65: return "CL_INVALID_IMAGE_DESCRIPTOR"
    case -66: return "CL_INVALID_COMPILER_OPTIONS"
    case -67: return "CL_INVALID_LINKER_OPTIONS"
    case -68: return "CL_INVALID_DEVICE_PARTITION_COUNT"
    case -69: return "CL_INVALID_PIPE_SIZE"
    case -70: return "CL_INVALID_DEVICE_QUEUE"
    case -71: return "CL_INVALID_SPEC_ID"
    case -72: return "CL_MAX_SIZE_RESTRICTION_EXCEEDED"
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR"
    default: return "unknown OpenCL status \(status)"
    }
}

extension GPUBridgeError {
    /// The error for a failed OpenCL call: the call's name, its status and the status's name.
    static func openCL(_ call: String, _ status: Int32) -> GPUBridgeError {
        .backendFailure(backend: "opencl", call: call, code: Int(status), message: openCLStatusName(status))
    }
}

/// The one check every OpenCL status goes through: throws `backendFailure` naming `call` unless `status` is
/// `CL_SUCCESS`.
@inline(__always)
func clCheck(_ call: StaticString, _ status: Int32) throws(GPUBridgeError) {
    guard status == CL.success else { throw .openCL(call.description, status) }
}

/// Runs a `clCreate*`-style call that reports its status through an out-parameter and returns an object; throws
/// through `clCheck` when the status is an error or the object is missing.
@inline(__always)
func clCreate(_ call: StaticString, _ body: (UnsafeMutablePointer<Int32>) -> OpaquePointer?) throws(GPUBridgeError)
    -> OpaquePointer
{
    var status: Int32 = CL.success
    let object = body(&status)
    return try clCreated(call, object, status)
}

/// The object a `clCreate*` call returned, checked against the status it reported.
@inline(__always)
func clCreated(_ call: StaticString, _ object: OpaquePointer?, _ status: Int32) throws(GPUBridgeError) -> OpaquePointer
{
    try clCheck(call, status)
    guard let object else {
        throw .backendFailure(
            backend: "opencl", call: call.description, code: 0, message: "CL_SUCCESS but no object returned")
    }
    return object
}

extension OpenCLLibrary {
    /// Reads a variable-length info value (`clGet*Info` with the size-query protocol) as bytes.
    func infoBytes(_ call: StaticString, _ query: (Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32)
        throws(GPUBridgeError) -> [UInt8]
    {
        var size = 0
        try clCheck(call, query(0, nil, &size))
        guard size > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: size)
        let status = bytes.withUnsafeMutableBytes { query(size, $0.baseAddress, nil) }
        try clCheck(call, status)
        return bytes
    }

    /// Reads a NUL-terminated string info value, trimmed of trailing NULs and whitespace.
    func infoString(_ call: StaticString, _ query: (Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32)
        throws(GPUBridgeError) -> String
    {
        var bytes = try infoBytes(call, query)
        if let nul = bytes.firstIndex(of: 0) { bytes.removeSubrange(nul...) }
        while let last = bytes.last, last == 0x20 || last == 0x0A || last == 0x09 || last == 0x0D { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads a fixed-size info value of type `T`.
    func infoValue<T: BitwiseCopyable>(
        _ call: StaticString, _ initial: T,
        _ query: (Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
    ) throws(GPUBridgeError) -> T {
        var value = initial
        let status = withUnsafeMutableBytes(of: &value) { query($0.count, $0.baseAddress, nil) }
        try clCheck(call, status)
        return value
    }

    func deviceString(_ device: OpaquePointer, _ parameter: UInt32) throws(GPUBridgeError) -> String {
        try infoString("clGetDeviceInfo") { getDeviceInfo(device, parameter, $0, $1, $2) }
    }

    func deviceValue<T: BitwiseCopyable>(_ device: OpaquePointer, _ parameter: UInt32, _ initial: T)
        throws(GPUBridgeError) -> T
    {
        try infoValue("clGetDeviceInfo", initial) { getDeviceInfo(device, parameter, $0, $1, $2) }
    }

    func platformString(_ platform: OpaquePointer, _ parameter: UInt32) throws(GPUBridgeError) -> String {
        try infoString("clGetPlatformInfo") { getPlatformInfo(platform, parameter, $0, $1, $2) }
    }
}
