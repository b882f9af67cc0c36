#!/usr/bin/env python3
"""Peer measurements for scripts/compare-peers: the same work as `gpubridge bench`, done with numpy (CPU),
pyopencl (the same OpenCL device) and, where installed, CuPy and PyTorch (CUDA); numpy again for the built-in kernels
(`bench kernels`); Ray actor calls and a plain grpcio unary echo for `bench cluster`. Prints JSON figures shaped like
`gpubridge bench --json`. A peer that is not installed is reported as unavailable, never estimated.

Usage: peers.py PEER [N] [REPEATS]
  PEER     numpy, pyopencl, pytorch, cupy (N = elements, 0 or absent = 20 000 000),
           numpy-kernels (N = elements of the vector kernels, 0 or absent = 4 000 000, as `bench kernels`),
           ray, grpcio (N = bytes of the large echo, 0 or absent = 64 MiB, as `bench cluster`)
  REPEATS  samples per figure after one warm-up (default 10)"""
import json
import os
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

def fig(peer, suite, name, unit, samples, rate, size, note=None, verified=None):
    """verified: None when the figure has no result to check, else whether the peer's result checked out."""
    values = [rate(s) for s in samples]
    return {"peer": peer, "suite": suite, "name": name, "unit": unit, "median": statistics.median(values),
            "min": min(values), "max": max(values), "samples": len(values), "size": size, "note": note,
            "verified": verified}

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

# ---------------------------------------------------------------------------------------------------------------
# numpy-kernels: the work of `gpubridge bench kernels` (Sources/gpubridge/Bench/Suites.swift, KernelRunner.swift),
# with the same sizes, the same inputs (SplitMix64, seed 7) and the same bytes / FLOP accounting per run.

KERNEL_NAMES = ["vector-add", "saxpy", "scale", "dot", "sum", "matmul", "softmax", "topk", "histogram"]

def splitmix_floats(start, count, lo, hi, seed=7):
    """Floats `start ..< start + count` of GPUBridge's SplitMix64(seed) stream, uniformly in [lo, hi), float32,
    computed the way SplitMix64.float does (so the inputs are the ones our kernels get)."""
    import numpy as np
    u64 = np.uint64
    k = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = u64(seed) + k * u64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> u64(30))) * u64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> u64(27))) * u64(0x94D049BB133111EB)
        z = z ^ (z >> u64(31))
    unit = (z >> u64(40)).astype(np.float32) / np.float32(1 << 24)
    return np.float32(lo) + np.float32(hi - lo) * unit

def kernel_sizes(name, n):
    # As Suites.kernels: matrix sides, columns of 64 rows, rows searched; elements otherwise.
    return {"matmul": [128, 512], "softmax": [1024, 16384], "topk": [10_000, 100_000]}.get(name, [n // 16, n])

def kernel_work(name, s):
    # Work per run, as Suites.kernels counts it: bytes read and written, or floating-point operations.
    if name in ("vector-add", "saxpy"):
        return "GB/s", 12 * s
    if name in ("scale", "dot"):
        return "GB/s", 8 * s
    if name in ("sum", "histogram"):
        return "GB/s", 4 * s
    if name == "softmax":
        return "GB/s", 8 * 64 * s
    if name == "matmul":
        return "GFLOP/s", 2 * s * s * s
    return "GFLOP/s", 6 * 8 * 64 * s  # topk: 8 queries x s rows x 64 dims, 3 multiply-adds each

def numpy_kernel(name, s):
    """(operation, check): the operation on float32 arrays already in memory, and a check of its result against a
    float64 computation with the tolerances KernelRunner uses for ours."""
    import numpy as np
    f64 = np.float64
    def relative(got, want):
        return abs(float(got) - want) <= 1e-4 * max(1.0, abs(want))
    if name == "vector-add":
        a, b = splitmix_floats(0, s, -1, 1), splitmix_floats(s, s, -1, 1)
        # float32 a + b is correctly rounded: it equals the float64 sum rounded to float32.
        return (lambda: a + b), (lambda c: bool(np.array_equal(c, (a.astype(f64) + b).astype(np.float32))))
    if name == "saxpy":
        x, y = splitmix_floats(0, s, -1, 1), splitmix_floats(s, s, -1, 1)
        alpha = np.float32(2)
        return (lambda: alpha * x + y), \
               (lambda out: bool(np.all(np.abs(out - (2 * x.astype(f64) + y)) <= 1e-6 * (1 + np.abs(out)))))
    if name == "scale":
        x = splitmix_floats(0, s, -1, 1)
        half = np.float32(0.5)
        return (lambda: half * x), (lambda out: bool(np.array_equal(out.astype(f64), 0.5 * x.astype(f64))))
    if name == "dot":
        a, b = splitmix_floats(0, s, -1, 1), splitmix_floats(s, s, -1, 1)
        return (lambda: np.dot(a, b)), (lambda out: relative(out, float(np.dot(a.astype(f64), b.astype(f64)))))
    if name == "sum":
        a = splitmix_floats(0, s, -1, 1)
        return (lambda: np.sum(a)), (lambda out: relative(out, float(np.sum(a.astype(f64)))))
    if name == "matmul":
        a = splitmix_floats(0, s * s, -1, 1).reshape(s, s)
        b = splitmix_floats(s * s, s * s, -1, 1).reshape(s, s)
        def check(c):
            want = a.astype(f64) @ b.astype(f64)
            return bool(np.all(np.abs(c - want) <= 1e-3 * (1 + np.abs(want))))
        return (lambda: a @ b), check
    if name == "softmax":
        x = splitmix_floats(0, 64 * s, -5, 5).reshape(64, s)
        def softmax():
            # Row-wise exp(x - max) / sum over a 64 x s float32 array.
            e = np.exp(x - x.max(axis=1, keepdims=True))
            e /= e.sum(axis=1, keepdims=True)
            return e
        def check(y):
            x64 = x.astype(f64)
            e = np.exp(x64 - x64.max(axis=1, keepdims=True))
            return bool(np.all(np.abs(y - e / e.sum(axis=1, keepdims=True)) <= 1e-5))
        return softmax, check
    if name == "topk":
        dim, queries, k = 64, 8, min(10, s)
        m = splitmix_floats(0, s * dim, -1, 1).reshape(s, dim)
        q = splitmix_floats(s * dim, queries * dim, -1, 1).reshape(queries, dim)
        def topk():
            # Cosine similarity of 8 queries against every row (normalise, matmul), then the best k per query:
            # argpartition, then a sort of those k, best first.
            qn = q / np.sqrt(np.einsum("ij,ij->i", q, q))[:, None]
            scores = (qn @ m.T) / np.sqrt(np.einsum("ij,ij->i", m, m))
            idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(scores, idx, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            return np.take_along_axis(idx, order, axis=1), np.take_along_axis(top, order, axis=1)
        def check(result):
            _, top = result
            m64, q64 = m.astype(f64), q.astype(f64)
            cos = (q64 @ m64.T) / np.outer(np.linalg.norm(q64, axis=1), np.linalg.norm(m64, axis=1))
            want = -np.sort(-cos, axis=1)[:, :k]
            return bool(np.all(np.abs(top - want) <= 1e-4))
        return topk, check
    if name == "histogram":
        v = splitmix_floats(0, s, -1, 1)
        def check(counts):
            # HostReference.histogram's float rule: bin = min(255, Int((v - lo) * (bins / (hi - lo)))).
            inside = v[(v >= -1) & (v <= 1)]
            bins = np.minimum(255, ((inside - np.float32(-1)) * np.float32(128)).astype(np.intp))
            return bool(np.array_equal(counts, np.bincount(bins, minlength=256)))
        return (lambda: np.histogram(v, bins=256, range=(-1, 1))[0]), check
    raise ValueError(f"unknown kernel {name}")

def numpy_kernels(n, repeats):
    import numpy as np  # noqa: F401  (reported as unavailable when missing)
    n = n or 4_000_000
    out = []
    for name in KERNEL_NAMES:
        for s in kernel_sizes(name, n):
            op, check = numpy_kernel(name, s)
            verified = check(op())
            unit, work = kernel_work(name, s)
            out.append(fig("numpy", "kernels", f"{name} size {s}", unit, median_of(op, repeats),
                           lambda sec, work=work: work / sec / 1e9, s,
                           "numpy on arrays already in memory (no upload or download); ours is end to end", verified))
    return out

# ---------------------------------------------------------------------------------------------------------------
# ray and grpcio: the work of `gpubridge bench cluster` (Sources/gpubridge/Bench/ClusterSuite.swift), plaintext on
# loopback: echo round trips of 64 B and of a large buffer, and 64 B calls per second with 32 in flight. The figure
# names are the ones of our remote-actor figures (ray) and of our plain gRPC unary figures (grpcio).

IN_FLIGHT, PER_SAMPLE = 32, 4000  # as ClusterSuite: 32 calls in flight, 4 000 calls per throughput sample

def echo_payloads(large_bytes):
    import numpy as np
    small = np.random.default_rng(77).integers(0, 256, 64, dtype=np.uint8).tobytes()
    # The large buffer has ClusterSuite's pattern: byte i = (i * 2654435761) >> 7, truncated.
    i = np.arange(large_bytes, dtype=np.uint64)
    large = ((i * np.uint64(2_654_435_761)) >> np.uint64(7)).astype(np.uint8).tobytes()
    return small, large

def large_label(large_bytes):
    # As ClusterSuite: "\(count >> 20) MiB", in ms above 1 MiB, µs otherwise.
    return f"{large_bytes >> 20} MiB", ("ms" if large_bytes > 1 << 20 else "µs")

def cluster_figures(peer, names, echo, echo_many, small, large, repeats, note):
    """Measures with `echo(bytes) -> bytes` (one call, waited for) and `echo_many(bytes, count) -> [bytes]` (count
    calls, 32 in flight). names: (small round trip, large round trip, calls in flight) figure names."""
    out = []
    # 64 B round trip, median of as many rounds as ClusterSuite takes; every echo is compared with the payload.
    ok = [echo(small) == small]
    def small_call():
        ok[0] = echo(small) == small and ok[0]
    samples = median_of(small_call, max(repeats * 20, 200))
    out.append(fig(peer, "cluster", names[0], "µs", samples, lambda s: s * 1e6, len(small), f"round trip; {note}", ok[0]))
    # Large round trip: the length is checked on each call, the bytes before and after (as ClusterSuite does).
    label, unit = large_label(len(large))
    ok = [echo(large) == large]
    def large_call():
        ok[0] = len(echo(large)) == len(large) and ok[0]
    samples = median_of(large_call, repeats)
    ok[0] = echo(large) == large and ok[0]
    scale = 1e3 if unit == "ms" else 1e6
    out.append(fig(peer, "cluster", names[1], unit, samples, lambda s: s * scale, len(large), f"round trip; {note}", ok[0]))
    # Calls per second: 4 000 calls of 64 B per sample, 32 in flight; every echo is compared.
    ok = [True]
    def many():
        ok[0] = all(r == small for r in echo_many(small, PER_SAMPLE)) and ok[0]
    samples = median_of(many, max(3, repeats // 2))
    out.append(fig(peer, "cluster", names[2], "calls/s", samples, lambda s: PER_SAMPLE / s, PER_SAMPLE, note, ok[0]))
    return out

def ray_suite(large_bytes, repeats):
    import logging
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    small, large = echo_payloads(large_bytes or 64 << 20)
    label, _ = large_label(len(large))
    # A fresh local Ray (never one named by RAY_ADDRESS), quiet: no dashboard, no worker logs, errors only.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             configure_logging=True)
    try:
        @ray.remote
        class Echo:
            def echo(self, data: bytes) -> bytes:
                return data

        actor = Echo.remote()
        def echo(data):
            return ray.get(actor.echo.remote(data))
        def echo_many(data, count):
            # Issue 32 calls, wait for all of them, repeat.
            results = []
            for start in range(0, count, IN_FLIGHT):
                results += ray.get([actor.echo.remote(data) for _ in range(min(IN_FLIGHT, count - start))])
            return results
        return cluster_figures(
            "ray", ("remote actor call, echo 64 B", f"remote actor call, echo {label}",
                    f"remote actor calls, 64 B, {IN_FLIGHT} in flight"),
            echo, echo_many, small, large, repeats,
            f"ray {ray.__version__}: ray.get(actor.echo.remote(bytes)), actor in a worker process, num_cpus=2; "
            f"in flight: batches of {IN_FLIGHT} calls, each batch waited for")
    finally:
        ray.shutdown()

GRPC_METHOD = "/bench.Echo/Echo"

def grpc_limits(large_bytes):
    limit = large_bytes + (1 << 20)  # as ClusterSuite: the large buffer plus 1 MiB, in one message
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]

def grpcio_echo_server(large_bytes):
    """The grpcio echo server (run as `peers.py grpcio-echo-server BYTES` by grpcio_suite): a unary method of raw
    bytes (no protobuf), plaintext on 127.0.0.1, on an asyncio server. Prints its port, serves until stdin closes."""
    import asyncio
    import grpc

    async def echo(request, context):
        return request

    async def serve():
        server = grpc.aio.server(options=grpc_limits(large_bytes))
        # No (de)serializers: the handler gets and returns the message bytes as they are.
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        # Stop when the parent closes stdin (or dies).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(None)

    asyncio.run(serve())

def grpcio_suite(large_bytes, repeats):
    import subprocess
    import threading
    import grpc
    small, large = echo_payloads(large_bytes or 64 << 20)
    label, _ = large_label(len(large))
    # The server in a process of its own, so that client and server do not share one interpreter lock.
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "grpcio-echo-server", str(len(large))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the grpcio echo server did not start (exit {server.poll()})")
        channel = grpc.insecure_channel(f"127.0.0.1:{int(line)}", options=grpc_limits(len(large)))
        try:
            grpc.channel_ready_future(channel).result(timeout=30)
            call = channel.unary_unary(GRPC_METHOD)  # no (de)serializers: raw bytes
            def echo(data):
                return call(data)  # blocking unary call
            def echo_many(data, count):
                # Futures, 32 in flight all along: a call starts as soon as one completes (as ClusterSuite's
                # 32 tasks each make their share of the calls one after another).
                slots = threading.Semaphore(IN_FLIGHT)
                results, errors = [], []
                def done(future):
                    try:
                        results.append(future.result())
                    except Exception as error:
                        errors.append(error)
                    slots.release()
                for _ in range(count):
                    slots.acquire()
                    call.future(data).add_done_callback(done)
                for _ in range(IN_FLIGHT):  # wait for the last ones
                    slots.acquire()
                if errors:
                    raise errors[0]
                return results
            return cluster_figures(
                "grpcio", ("plain gRPC unary, echo 64 B", f"plain gRPC unary, echo {label}",
                           f"plain gRPC unary, 64 B, {IN_FLIGHT} in flight"),
                echo, echo_many, small, large, repeats,
                f"grpcio {grpc.__version__}: raw-bytes unary echo, blocking client (futures for calls in flight), "
                "asyncio server in another process, plaintext")
        finally:
            channel.close()
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

# The machine's memory roof: STREAM copy, add and triad in C, compiled here with -O3 -march=native -fopenmp and run on
# every core (OMP_NUM_THREADS unset: one thread per core). Bytes counted as STREAM counts them (read + written).
C_STREAM = r"""
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void* a, const void* b) { double x = *(const double*)a, y = *(const double*)b; return (x > y) - (x < y); }
int main(int argc, char** argv) {
    long n = atol(argv[1]); int reps = atoi(argv[2]);
    float *a = aligned_alloc(64, n * 4), *b = aligned_alloc(64, n * 4), *c = aligned_alloc(64, n * 4);
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) { a[i] = 1; b[i] = 2; c[i] = 0; }
    const char* names[3] = {"copy float", "add float", "triad float"};
    double bytes[3] = {8.0 * n, 12.0 * n, 12.0 * n};
    double* t = malloc(sizeof(double) * (reps + 1));
    for (int k = 0; k < 3; k++) {
        for (int r = 0; r <= reps; r++) {  /* r == 0 is the warm-up */
            double s = now();
            if (k == 0) {
                #pragma omp parallel for schedule(static)
                for (long i = 0; i < n; i++) c[i] = a[i];
            } else if (k == 1) {
                #pragma omp parallel for schedule(static)
                for (long i = 0; i < n; i++) c[i] = a[i] + b[i];
            } else {
                #pragma omp parallel for schedule(static)
                for (long i = 0; i < n; i++) a[i] = b[i] + 3.0f * c[i];
            }
            t[r] = now() - s;
        }
        /* The result check, every element: copy c = a = 1; add c = 1 + 2 = 3; triad a = 2 + 3 * 3 = 11. */
        int ok = 1;
        const float* got = k == 2 ? a : c;
        const float want = k == 0 ? 1.0f : (k == 1 ? 3.0f : 11.0f);
        for (long i = 0; i < n; i++) if (got[i] != want) { ok = 0; break; }
        qsort(t + 1, reps, sizeof(double), cmp);
        printf("%s %d %.9f %.9f %.9f %d\n", names[k], ok, t[1 + reps / 2], t[1], t[reps], omp_get_max_threads());
    }
    /* A copy into freshly allocated memory (what reading a buffer back into a new array costs): malloc maps new
       pages for a block this large and free unmaps them, so every pass pays the first touch of its destination. */
    int ok = 1;
    for (int r = 0; r <= reps; r++) {
        double s = now();
        float* d = malloc(n * 4);
        #pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) d[i] = c[i];
        t[r] = now() - s;
        for (long i = 0; i < n; i++) if (d[i] != 3.0f) { ok = 0; break; }
        free(d);
    }
    qsort(t + 1, reps, sizeof(double), cmp);
    printf("copy float, fresh destination %d %.9f %.9f %.9f %d\n", ok, t[1 + reps / 2], t[1], t[reps], omp_get_max_threads());
    return 0;
}
"""

def c_stream(n, repeats):
    import subprocess
    import tempfile
    out = []
    with tempfile.TemporaryDirectory() as folder:
        source, binary = os.path.join(folder, "stream.c"), os.path.join(folder, "stream")
        open(source, "w").write(C_STREAM)
        subprocess.run(["cc", "-O3", "-march=native", "-fopenmp", source, "-o", binary], check=True,
                       capture_output=True)
        lines = subprocess.run([binary, str(n), str(repeats)], check=True, capture_output=True, text=True).stdout
    for line in lines.strip().splitlines():
        *name, ok, median, fastest, slowest, threads = line.split()
        name = " ".join(name)
        moved = {"copy float": 8 * n, "add float": 12 * n, "triad float": 12 * n,
                 "copy float, fresh destination": 8 * n}[name]
        rate = lambda sec: moved / sec / 1e9
        out.append({"peer": "c-stream", "suite": "stream", "name": name, "unit": "GB/s", "median": rate(float(median)),
                    "min": rate(float(slowest)), "max": rate(float(fastest)), "samples": repeats, "size": n,
                    "verified": ok == "1", "note": f"C, -O3 -march=native, OpenMP with {threads} threads"})
    return out

def main():
    which = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 0  # 0: the peer's default size
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    if which in ("numpy", "pyopencl", "pytorch", "c-stream"):
        n = n or 20_000_000
    if which == "grpcio-echo-server":  # grpcio_suite's server process, not a peer
        grpcio_echo_server(n)
        return
    # Whatever the libraries print goes to standard error; standard output carries the JSON alone.
    json_out = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    try:
        result = {"numpy": lambda: numpy_stream(n, repeats), "pyopencl": lambda: pyopencl_suite(n, repeats),
                  "pytorch": lambda: torch_suite(n, repeats), "cupy": lambda: cupy_suite(repeats),
                  "numpy-kernels": lambda: numpy_kernels(n, repeats), "ray": lambda: ray_suite(n, repeats),
                  "grpcio": lambda: grpcio_suite(n, repeats), "c-stream": lambda: c_stream(n, repeats)}[which]()
        report = {"peer": which, "available": True, "figures": result}
    except Exception as error:  # a peer that cannot run is reported, not faked
        report = {"peer": which, "available": False, "reason": f"{type(error).__name__}: {error}", "figures": []}
    sys.stdout.flush()
    json_out.write(json.dumps(report) + "\n")
    json_out.flush()

if __name__ == "__main__":
    main()
