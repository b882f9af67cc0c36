import GPUBridge
import GPUBridgeCUDA

/// What this machine offers the CUDA tests, found once per test process.
///
/// CI has NVRTC (from the `nvidia-cuda-nvrtc` wheel) but no GPU and no driver: compiler and packing tests run there,
/// driver tests are skipped with a visible reason. On a GPU machine every test runs.
enum CUDATestSupport {
    /// The NVRTC the default search finds, or nil.
    static let nvrtc: NVRTCCompiler? = try? NVRTCCompiler.shared.get()
    static var hasNVRTC: Bool { nvrtc != nil }

    /// Discovery with the default options (one stream per device).
    static let report: BackendReport = CUDABackendProvider().discover()
    /// The first CUDA device, when `libcuda.so.1` loads and the driver finds one.
    static let backend: CUDABackend? = report.devices.first as? CUDABackend
    static var hasDevice: Bool { backend != nil && hasNVRTC }

    /// A fresh `Device` (own pool, memory-only kernel cache) over the shared backend.
    static func device(poolLimit: Int? = nil) throws -> Device {
        guard let backend else {
            throw GPUBridgeError.backendUnavailable(backend: "cuda", reason: report.unavailableReason ?? "no device")
        }
        return try Device(backend: backend, poolLimit: poolLimit)
    }

    /// The real architectures the tests compile for: sm_80, sm_90 and the newest other one NVRTC supports.
    static var architectures: [String] {
        guard let nvrtc else { return [] }
        var chosen = [80, 90].filter(nvrtc.supportedArchitectures.contains)
        if let other = nvrtc.supportedArchitectures.last(where: { !chosen.contains($0) }) { chosen.append(other) }
        return chosen.map { "sm_\($0)" }
    }

    /// A block sum: dynamic shared memory and `__syncthreads`. `output[block] = sum of the block's inputs`.
    static let blockSum = KernelSource(
        name: "block_sum", language: .cuda,
        text: """
            extern "C" __global__ void block_sum(const float* __restrict__ input, float* __restrict__ output, int n) {
                extern __shared__ float partial[];
                unsigned int tid = threadIdx.x;
                unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
                partial[tid] = i < (unsigned int)n ? input[i] : 0.0f;
                __syncthreads();
                for (unsigned int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
                    if (tid < stride) partial[tid] += partial[tid + stride];
                    __syncthreads();
                }
                if (tid == 0) output[blockIdx.x] = partial[0];
            }
            """, entryPoint: "block_sum",
        parameters: [
            .buffer("input", Float.self, extent: .argument(2)),
            .buffer("output", Float.self),
            .scalar(name: "n", type: .int32),
        ])

    /// 16 KiB of static shared memory beside dynamic shared memory: with 40 KiB dynamic the block needs 56 KiB, past
    /// the 48 KiB that needs no opt-in. `output[block * blockDim + t] = input[...] + staged[t % 4096] * 2` where
    /// both shared arrays are written and read back.
    static let staticAndDynamicShared = KernelSource(
        name: "static_dynamic_shared", language: .cuda,
        text: """
            extern "C" __global__ void static_dynamic_shared(const float* __restrict__ input, float* __restrict__ output,
                                                             int dynamicFloats) {
                __shared__ float fixedPart[4096];
                extern __shared__ float dynamicPart[];
                unsigned int t = threadIdx.x;
                unsigned int i = blockIdx.x * blockDim.x + t;
                for (unsigned int k = t; k < 4096; k += blockDim.x) fixedPart[k] = (float)k;
                for (int k = (int)t; k < dynamicFloats; k += (int)blockDim.x) dynamicPart[k] = input[i] + (float)k;
                __syncthreads();
                float a = fixedPart[t % 4096];
                float b = dynamicPart[(dynamicFloats - 1 - (int)t % dynamicFloats)];
                output[i] = a + b;
            }
            """, entryPoint: "static_dynamic_shared",
        parameters: [
            .buffer("input", Float.self), .buffer("output", Float.self), .scalar(name: "dynamicFloats", type: .int32),
        ])

    /// A tile transpose with static shared memory and `__syncthreads`.
    static let transpose = KernelSource(
        name: "transpose_tile", language: .cuda,
        text: """
            #define TILE 32
            extern "C" __global__ void transpose_tile(const float* in, float* out, int width, int height) {
                __shared__ float tile[TILE][TILE + 1];
                int x = blockIdx.x * TILE + threadIdx.x;
                int y = blockIdx.y * TILE + threadIdx.y;
                if (x < width && y < height) tile[threadIdx.y][threadIdx.x] = in[y * width + x];
                __syncthreads();
                x = blockIdx.y * TILE + threadIdx.x;
                y = blockIdx.x * TILE + threadIdx.y;
                if (x < height && y < width) out[y * height + x] = tile[threadIdx.x][threadIdx.y];
            }
            """, entryPoint: "transpose_tile")

    /// Source with a syntax error on line 3.
    static let broken = KernelSource(
        name: "broken", language: .cuda,
        text: """
            extern "C" __global__ void broken(float* out) {
                int i = threadIdx.x;
                out[i] = undeclared_value +;
            }
            """, entryPoint: "broken")
}
