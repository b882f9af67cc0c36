#!/usr/bin/env python3
"""Peer measurements for scripts/compare-peers: the same work as `gpubridge bench`, done with numpy (CPU),
pyopencl (the same OpenCL device) and, where installed, CuPy and PyTorch (CUDA). Prints JSON figures shaped like
`gpubridge bench --json`. A peer that is not installed is reported as unavailable, never estimated."""
import json
import statistics
import sys
import time

def median_of(fn, repeats):
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return samples

def fig(peer, suite, name, unit, samples, rate, size, note=None):
    values = [rate(s) for s in samples]
    return {"peer": peer, "suite": suite, "name": name, "unit": unit, "median": statistics.median(values),
            "min": min(values), "max": max(values), "samples": len(values), "size": size, "note": note}

def numpy_stream(n, repeats):
    import numpy as np
    out = []
    for dtype, t in ((np.float32, "float"), (np.float64, "double")):
        a = np.full(n, 1, dtype); b = np.full(n, 2, dtype); c = np.zeros(n, dtype); tmp = np.empty(n, dtype)
        s = dtype(3)
        w = np.dtype(dtype).itemsize
        gb = lambda moved: (lambda sec: moved / sec / 1e9)
        out.append(fig("numpy", "stream", f"copy {t}", "GB/s", median_of(lambda: np.copyto(c, a), repeats), gb(2 * n * w), n))
        out.append(fig("numpy", "stream", f"mul {t}", "GB/s", median_of(lambda: np.multiply(c, s, out=b), repeats), gb(2 * n * w), n))
        out.append(fig("numpy", "stream", f"add {t}", "GB/s", median_of(lambda: np.add(a, b, out=c), repeats), gb(3 * n * w), n))
        def triad():
            np.multiply(c, s, out=tmp)
            np.add(b, tmp, out=a)
        out.append(fig("numpy", "stream", f"triad {t}", "GB/s", median_of(triad, repeats), gb(3 * n * w), n,
                       "two numpy passes (multiply, then add)"))
        out.append(fig("numpy", "stream", f"dot {t}", "GB/s", median_of(lambda: np.dot(a, b), repeats), gb(2 * n * w), n))
    return out

STREAM_CL = """
__kernel void stream_copy(__global const T* restrict a, __global T* restrict c, int n) { int i = get_global_id(0); if (i < n) c[i] = a[i]; }
__kernel void stream_mul(__global const T* restrict c, __global T* restrict b, T s, int n) { int i = get_global_id(0); if (i < n) b[i] = s * c[i]; }
__kernel void stream_add(__global const T* restrict a, __global const T* restrict b, __global T* restrict c, int n) { int i = get_global_id(0); if (i < n) c[i] = a[i] + b[i]; }
__kernel void stream_triad(__global const T* restrict b, __global const T* restrict c, __global T* restrict a, T s, int n) { int i = get_global_id(0); if (i < n) a[i] = b[i] + s * c[i]; }
__kernel void tiny(__global int* x) { if (get_global_id(0) == 0) x[0] += 1; }
"""

def pyopencl_suite(n, repeats):
    import numpy as np
    import pyopencl as cl
    platform = cl.get_platforms()[0]
    device = platform.get_devices()[0]
    ctx = cl.Context([device])
    queue = cl.CommandQueue(ctx)
    out = []
    mf = cl.mem_flags
    for dtype, t in ((np.float32, "float"), (np.float64, "double")):
        prog = cl.Program(ctx, ("#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n" if t == "double" else "") + STREAM_CL).build(options=[f"-DT={t}"])
        w = np.dtype(dtype).itemsize
        a = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.full(n, 1, dtype))
        b = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.full(n, 2, dtype))
        c = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.zeros(n, dtype))
        g = ((n + 255) // 256) * 256
        s = dtype(3); nn = np.int32(n)
        k = {name: getattr(prog, "stream_" + name) for name in ("copy", "mul", "add", "triad")}
        gb = lambda moved: (lambda sec: moved / sec / 1e9)
        out.append(fig("pyopencl", "stream", f"copy {t}", "GB/s", median_of(lambda: k["copy"](queue, (g,), (256,), a, c, nn).wait(), repeats), gb(2 * n * w), n))
        out.append(fig("pyopencl", "stream", f"mul {t}", "GB/s", median_of(lambda: k["mul"](queue, (g,), (256,), c, b, s, nn).wait(), repeats), gb(2 * n * w), n))
        out.append(fig("pyopencl", "stream", f"add {t}", "GB/s", median_of(lambda: k["add"](queue, (g,), (256,), a, b, c, nn).wait(), repeats), gb(3 * n * w), n))
        out.append(fig("pyopencl", "stream", f"triad {t}", "GB/s", median_of(lambda: k["triad"](queue, (g,), (256,), b, c, a, s, nn).wait(), repeats), gb(3 * n * w), n))
    prog = cl.Program(ctx, STREAM_CL.replace("T", "float")).build()
    x = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.zeros(1, np.int32))
    tiny = prog.tiny
    out.append(fig("pyopencl", "launch", "launch+wait", "µs", median_of(lambda: tiny(queue, (32,), (32,), x).wait(), max(repeats, 200)), lambda s: s * 1e6, 1))
    def queued():
        for _ in range(1000):
            tiny(queue, (32,), (32,), x)
        queue.finish()
    out.append(fig("pyopencl", "launch", "queued launches", "launches/s", median_of(queued, max(3, repeats // 2)), lambda s: 1000 / s, 1000))
    return out

def torch_suite(n, repeats):
    import torch
    if not torch.cuda.is_available():
        raise RuntimeError("PyTorch has no CUDA device")
    out = []
    a = torch.ones(n, device="cuda"); b = torch.full((n,), 2.0, device="cuda"); c = torch.zeros(n, device="cuda")
    def sync(f):
        def g():
            f(); torch.cuda.synchronize()
        return g
    out.append(fig("pytorch", "stream", "copy float", "GB/s", median_of(sync(lambda: c.copy_(a)), repeats), lambda s: 8 * n / s / 1e9, n, "device-to-device copy_: the roof"))
    out.append(fig("pytorch", "stream", "add float", "GB/s", median_of(sync(lambda: torch.add(a, b, out=c)), repeats), lambda s: 12 * n / s / 1e9, n))
    host = torch.ones(n).pin_memory()
    out.append(fig("pytorch", "transfer", "host->device pinned", "GB/s", median_of(sync(lambda: a.copy_(host, non_blocking=True)), repeats), lambda s: 4 * n / s / 1e9, 4 * n))
    out.append(fig("pytorch", "transfer", "device->host pinned", "GB/s", median_of(sync(lambda: host.copy_(a, non_blocking=True)), repeats), lambda s: 4 * n / s / 1e9, 4 * n))
    return out

def cupy_suite(repeats):
    import cupy
    tiny = cupy.RawKernel(r'extern "C" __global__ void tiny(int* x) { if (blockIdx.x * blockDim.x + threadIdx.x == 0) x[0] += 1; }', "tiny")
    x = cupy.zeros(1, dtype=cupy.int32)
    def launch():
        tiny((1,), (32,), (x,))
        cupy.cuda.runtime.deviceSynchronize()
    return [fig("cupy", "launch", "launch+wait", "µs", median_of(launch, max(repeats, 200)), lambda s: s * 1e6, 1)]

def main():
    which = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000_000
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    try:
        result = {"numpy": lambda: numpy_stream(n, repeats), "pyopencl": lambda: pyopencl_suite(n, repeats),
                  "pytorch": lambda: torch_suite(n, repeats), "cupy": lambda: cupy_suite(repeats)}[which]()
        print(json.dumps({"peer": which, "available": True, "figures": result}))
    except Exception as error:  # a peer that cannot run is reported, not faked
        print(json.dumps({"peer": which, "available": False, "reason": f"{type(error).__name__}: {error}", "figures": []}))

if __name__ == "__main__":
    main()
