import GPUBridge
import GPUBridgeTestSupport
import GPUBridgeOpenCL
import Glibc
import Testing

/// Whether this machine has OpenCL with at least one device (CI installs PoCL, which runs OpenCL on the CPU).
/// Suites that need a device are gated on it, so machines without OpenCL skip them visibly instead of failing.
enum OpenCLTestEnvironment {
    static let report = OpenCLBackendProvider().discover()
    static var available: Bool { report.isAvailable }
    static let skipReason: Comment = "needs an OpenCL platform with a device (scripts/test installs pocl-opencl-icd)"
    /// Whether the first device has double precision (`cl_khr_fp64`; PoCL's CPU device has it).
    static var float64: Bool { report.devices.first?.info.capabilities.float64 ?? false }
}

struct NoOpenCLDevice: Error {}

/// A fresh OpenCL backend (its own context, queues and counters, so tests running in parallel do not disturb each
/// other's counts) wrapped in a `Device` with a memory-only kernel cache, or a disk cache in `cacheFolder`.
func makeOpenCLDevice(cacheFolder: String? = nil) throws -> (device: Device, backend: OpenCLBackend) {
    guard let backend = OpenCLBackendProvider().discover().devices.first as? OpenCLBackend else {
        throw NoOpenCLDevice()
    }
    // A disk cache only where the test asks for one (and removes its folder): a folder per device left thousands of
    // folders behind in /tmp.
    return (try Device(backend: backend, cache: KernelCache(directory: cacheFolder)), backend)
}

/// A unique temporary folder path (created by whoever writes into it).
func temporaryFolder(_ name: String) -> String {
    var template = Array("/tmp/gpubridge-opencl-\(name)-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
        guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
        return String(cString: base)
    }
    return made ?? "/tmp/gpubridge-opencl-\(name)-\(getpid())"
}

/// Removes a folder and the files directly in it (the kernel cache writes no subfolders).
func removeFolder(_ path: String) {
    if let directory = opendir(path) {
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(directory)
    }
    rmdir(path)
}

/// `out[i] = base + i` for `i < n`: parameters (out, n, base).
let writeIndexKernel = KernelSource(
    name: "write_index", language: .openCLC,
    text: """
        __kernel void write_index(__global float* out, const int n, const float base) {
            int i = (int)get_global_id(0);
            if (i < n) out[i] = base + (float)i;
        }
        """, entryPoint: "write_index",
    parameters: [
        .buffer("out", Float.self, extent: .argument(1)), .scalar(name: "n", type: .int32),
        .scalar(name: "base", type: .float32),
    ])

/// `output[i] = input[i] * 2 + t` for `i < n`: parameters (input, output, t, n).
let scaleKernel = KernelSource(
    name: "scale", language: .openCLC,
    text: """
        __kernel void scale(__global const float* input, __global float* output, const float t, const int n) {
            int i = (int)get_global_id(0);
            if (i < n) output[i] = input[i] * 2.0f + t;
        }
        """, entryPoint: "scale",
    parameters: [
        .buffer("input", Float.self, extent: .argument(3)), .buffer("output", Float.self, extent: .argument(3)),
        .scalar(name: "t", type: .float32), .scalar(name: "n", type: .int32),
    ])
