/// The portable kernel dialect: one kernel text that compiles under NVRTC (CUDA C++) and OpenCL C.
///
/// A portable kernel is written against a few macros; `PortablePrelude.text(for:)` defines them for each compiler and
/// `PortableKernel.source(for:)` puts the prelude in front of the kernel text. See docs/PORTABLE-KERNELS.md.
///
/// | Macro | CUDA | OpenCL C |
/// | --- | --- | --- |
/// | `GB_KERNEL` | `extern "C" __global__ void` | `__kernel void` |
/// | `GB_GLOBAL` (pointer parameters) | nothing | `__global` |
/// | `GB_SHARED` (group-shared arrays) | `__shared__` | `__local` |
/// | `GB_RESTRICT` | `__restrict__` | `restrict` |
/// | `GB_DEVICE` (helper functions) | `__device__ inline` | `inline` |
/// | `GB_GLOBAL_ID(d)`, `GB_LOCAL_ID(d)`, `GB_GROUP_ID(d)` | from `blockIdx`, `threadIdx` | `get_global_id` ... |
/// | `GB_LOCAL_SIZE(d)`, `GB_NUM_GROUPS(d)`, `GB_GLOBAL_SIZE(d)` | from `blockDim`, `gridDim` | `get_local_size` ... |
/// | `GB_BARRIER()` | `__syncthreads()` | `barrier(CLK_LOCAL_MEM_FENCE \| CLK_GLOBAL_MEM_FENCE)` |
/// | `GB_ATOMIC_ADD_INT(p, v)`, `GB_ATOMIC_ADD_UINT(p, v)` | `atomicAdd` | `atomic_add` |
/// | `GB_ATOMIC_MIN_INT`/`_UINT`, `GB_ATOMIC_MAX_INT`/`_UINT` | `atomicMin`, `atomicMax` | `atomic_min`, `atomic_max` |
/// | `GB_ATOMIC_ADD_FLOAT`, `_MIN_FLOAT`, `_MAX_FLOAT` (global memory) | `atomicAdd`; CAS loops | CAS loops |
/// | `GB_INFINITY` | `__int_as_float(0x7f800000)` | `INFINITY` |
/// | `GB_EXPF`, `GB_SQRTF`, `GB_FMAXF` (float math) | `expf`, `sqrtf`, `fmaxf` | `exp`, `sqrt`, `fmax` |
/// | `uint` | `unsigned int` | built in |
/// | `GB_HAS_FP64`, `GB_HAS_FP16` | defined (fp64); fp16 not defined | defined where the device has the extension |
public enum PortablePrelude {
    /// The prelude for one compiler. `language` is `.cuda` or `.openCLC`.
    public static func text(for language: KernelLanguage) -> String {
        switch language {
        case .cuda: return cuda
        case .openCLC: return openCL
        case .swift: return ""
        }
    }

    static let cuda = """
        // GPUBridge portable prelude (CUDA)
        #define GB_CUDA 1
        #define GB_KERNEL extern "C" __global__ void
        #define GB_GLOBAL
        #define GB_SHARED __shared__
        #define GB_RESTRICT __restrict__
        #define GB_DEVICE __device__ __forceinline__
        typedef unsigned int uint;
        typedef unsigned long long gb_ulong;
        typedef long long gb_long;
        __device__ __forceinline__ int gb_u3(uint3 v, int d) { return (int)(d == 0 ? v.x : (d == 1 ? v.y : v.z)); }
        __device__ __forceinline__ int gb_d3(dim3 v, int d) { return (int)(d == 0 ? v.x : (d == 1 ? v.y : v.z)); }
        #define GB_LOCAL_ID(d) gb_u3(threadIdx, (d))
        #define GB_GROUP_ID(d) gb_u3(blockIdx, (d))
        #define GB_LOCAL_SIZE(d) gb_d3(blockDim, (d))
        #define GB_NUM_GROUPS(d) gb_d3(gridDim, (d))
        #define GB_GLOBAL_ID(d) (GB_GROUP_ID(d) * GB_LOCAL_SIZE(d) + GB_LOCAL_ID(d))
        #define GB_GLOBAL_SIZE(d) (GB_NUM_GROUPS(d) * GB_LOCAL_SIZE(d))
        #define GB_BARRIER() __syncthreads()
        #define GB_ATOMIC_ADD_INT(p, v) atomicAdd((int*)(p), (int)(v))
        #define GB_ATOMIC_ADD_UINT(p, v) atomicAdd((unsigned int*)(p), (unsigned int)(v))
        #define GB_ATOMIC_MIN_INT(p, v) atomicMin((int*)(p), (int)(v))
        #define GB_ATOMIC_MIN_UINT(p, v) atomicMin((unsigned int*)(p), (unsigned int)(v))
        #define GB_ATOMIC_MAX_INT(p, v) atomicMax((int*)(p), (int)(v))
        #define GB_ATOMIC_MAX_UINT(p, v) atomicMax((unsigned int*)(p), (unsigned int)(v))
        // Float atomics on global memory: add is the hardware's; min and max store v when it compares below (above)
        // the element (so a NaN is never stored), by compare-and-swap on the bits. Each returns the value before.
        __device__ __forceinline__ float gb_atomic_min_float(float* p, float v) {
            unsigned int* a = (unsigned int*)p;
            unsigned int old = *a;
            while (v < __uint_as_float(old)) {
                unsigned int assumed = old;
                old = atomicCAS(a, assumed, __float_as_uint(v));
                if (old == assumed) break;
            }
            return __uint_as_float(old);
        }
        __device__ __forceinline__ float gb_atomic_max_float(float* p, float v) {
            unsigned int* a = (unsigned int*)p;
            unsigned int old = *a;
            while (v > __uint_as_float(old)) {
                unsigned int assumed = old;
                old = atomicCAS(a, assumed, __float_as_uint(v));
                if (old == assumed) break;
            }
            return __uint_as_float(old);
        }
        #define GB_ATOMIC_ADD_FLOAT(p, v) atomicAdd((float*)(p), (float)(v))
        #define GB_ATOMIC_MIN_FLOAT(p, v) gb_atomic_min_float((float*)(p), (float)(v))
        #define GB_ATOMIC_MAX_FLOAT(p, v) gb_atomic_max_float((float*)(p), (float)(v))
        #define GB_INFINITY __int_as_float(0x7f800000)
        #define GB_MIN_INT(a, b) min((a), (b))
        #define GB_EXPF(x) expf(x)
        #define GB_SQRTF(x) sqrtf(x)
        #define GB_FMAXF(a, b) fmaxf((a), (b))
        #define GB_HAS_FP64 1
        // GB_FOR_EACH_ITEM(i, n): every index below n, spread over all work-items. Grid-stride (coalesced) by
        // default; one contiguous chunk per work-item when GB_CONTIGUOUS_ITEMS is defined (CPU devices).
        #ifdef GB_CONTIGUOUS_ITEMS
        #define GB_FOR_EACH_ITEM(i, n) for (int i = GB_GLOBAL_ID(0) * (((n) + GB_GLOBAL_SIZE(0) - 1) / GB_GLOBAL_SIZE(0)), \\
            gb_end_##i = GB_MIN_INT((n), i + (((n) + GB_GLOBAL_SIZE(0) - 1) / GB_GLOBAL_SIZE(0))); i < gb_end_##i; ++i)
        #define GB_CONTIGUOUS 1
        #else
        #define GB_FOR_EACH_ITEM(i, n) for (int i = GB_GLOBAL_ID(0); i < (n); i += GB_GLOBAL_SIZE(0))
        #define GB_CONTIGUOUS 0
        #endif

        """

    static let openCL = """
        // GPUBridge portable prelude (OpenCL C)
        #define GB_OPENCL 1
        #define GB_KERNEL __kernel void
        #define GB_GLOBAL __global
        #define GB_SHARED __local
        #define GB_RESTRICT restrict
        #define GB_DEVICE inline
        typedef ulong gb_ulong;
        typedef long gb_long;
        #define GB_LOCAL_ID(d) ((int)get_local_id(d))
        #define GB_GROUP_ID(d) ((int)get_group_id(d))
        #define GB_LOCAL_SIZE(d) ((int)get_local_size(d))
        #define GB_NUM_GROUPS(d) ((int)get_num_groups(d))
        #define GB_GLOBAL_ID(d) ((int)get_global_id(d))
        #define GB_GLOBAL_SIZE(d) ((int)get_global_size(d))
        #define GB_BARRIER() barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)
        #define GB_ATOMIC_ADD_INT(p, v) atomic_add((p), (int)(v))
        #define GB_ATOMIC_ADD_UINT(p, v) atomic_add((p), (uint)(v))
        #define GB_ATOMIC_MIN_INT(p, v) atomic_min((p), (int)(v))
        #define GB_ATOMIC_MIN_UINT(p, v) atomic_min((p), (uint)(v))
        #define GB_ATOMIC_MAX_INT(p, v) atomic_max((p), (int)(v))
        #define GB_ATOMIC_MAX_UINT(p, v) atomic_max((p), (uint)(v))
        // Float atomics on global memory, by compare-and-swap on the bits (OpenCL 1.x has no float atomics): add,
        // and min and max that store v when it compares below (above) the element (a NaN is never stored). Each
        // returns the value before.
        __attribute__((always_inline)) inline float gb_atomic_add_float(volatile __global float* p, float v) {
            volatile __global uint* a = (volatile __global uint*)p;
            uint old = *a;
            for (;;) {
                uint assumed = old;
                old = atomic_cmpxchg(a, assumed, as_uint(as_float(assumed) + v));
                if (old == assumed) return as_float(assumed);
            }
        }
        __attribute__((always_inline)) inline float gb_atomic_min_float(volatile __global float* p, float v) {
            volatile __global uint* a = (volatile __global uint*)p;
            uint old = *a;
            while (v < as_float(old)) {
                uint assumed = old;
                old = atomic_cmpxchg(a, assumed, as_uint(v));
                if (old == assumed) break;
            }
            return as_float(old);
        }
        __attribute__((always_inline)) inline float gb_atomic_max_float(volatile __global float* p, float v) {
            volatile __global uint* a = (volatile __global uint*)p;
            uint old = *a;
            while (v > as_float(old)) {
                uint assumed = old;
                old = atomic_cmpxchg(a, assumed, as_uint(v));
                if (old == assumed) break;
            }
            return as_float(old);
        }
        #define GB_ATOMIC_ADD_FLOAT(p, v) gb_atomic_add_float((p), (float)(v))
        #define GB_ATOMIC_MIN_FLOAT(p, v) gb_atomic_min_float((p), (float)(v))
        #define GB_ATOMIC_MAX_FLOAT(p, v) gb_atomic_max_float((p), (float)(v))
        #define GB_INFINITY INFINITY
        #define GB_MIN_INT(a, b) min((a), (b))
        #define GB_EXPF(x) exp(x)
        #define GB_SQRTF(x) sqrt(x)
        #define GB_FMAXF(a, b) fmax((a), (b))
        #ifdef cl_khr_fp64
        #pragma OPENCL EXTENSION cl_khr_fp64 : enable
        #define GB_HAS_FP64 1
        #endif
        #ifdef cl_khr_fp16
        #pragma OPENCL EXTENSION cl_khr_fp16 : enable
        #define GB_HAS_FP16 1
        #endif
        // GB_FOR_EACH_ITEM(i, n): every index below n, spread over all work-items. Grid-stride (coalesced) by
        // default; one contiguous chunk per work-item when GB_CONTIGUOUS_ITEMS is defined (CPU devices).
        #ifdef GB_CONTIGUOUS_ITEMS
        #define GB_FOR_EACH_ITEM(i, n) for (int i = GB_GLOBAL_ID(0) * (((n) + GB_GLOBAL_SIZE(0) - 1) / GB_GLOBAL_SIZE(0)), \\
            gb_end_##i = GB_MIN_INT((n), i + (((n) + GB_GLOBAL_SIZE(0) - 1) / GB_GLOBAL_SIZE(0))); i < gb_end_##i; ++i)
        #define GB_CONTIGUOUS 1
        #else
        #define GB_FOR_EACH_ITEM(i, n) for (int i = GB_GLOBAL_ID(0); i < (n); i += GB_GLOBAL_SIZE(0))
        #define GB_CONTIGUOUS 0
        #endif

        """
}

/// A kernel written once in the portable dialect, with its entry point and declared parameters.
public struct PortableKernel: Sendable, Hashable {
    public var name: String
    /// The kernel text, without the prelude.
    public var text: String
    public var entryPoint: String
    public var parameters: [KernelParameter]?

    public init(name: String, text: String, entryPoint: String, parameters: [KernelParameter]? = nil) {
        self.name = name
        self.text = text
        self.entryPoint = entryPoint
        self.parameters = parameters
    }

    /// The kernel for one compiler: the prelude followed by the text. `language` is `.cuda` or `.openCLC`.
    public func source(for language: KernelLanguage) throws(GPUBridgeError) -> KernelSource {
        guard language == .cuda || language == .openCLC else {
            throw .unsupported(feature: "portable kernel '\(name)' in \(language.rawValue)", backend: language.rawValue)
        }
        return KernelSource(
            name: name, language: language, text: PortablePrelude.text(for: language) + text,
            entryPoint: entryPoint, parameters: parameters)
    }
}
