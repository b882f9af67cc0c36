import Glibc
import Synchronization

/// The built-in kernel library: each kernel in the portable dialect (CUDA and OpenCL) and in Swift (CPU backend).
///
/// All kernels take 32-bit `int` counts, so a single launch covers at most `Int32.max` elements.
public enum BuiltinKernels {
    static let group = BuiltinKernelText.reductionGroupSize
    static let tile = BuiltinKernelText.matmulTile
    /// Serialises the CPU histogram's merge of per-chunk counts into the shared result.
    private static let histogramMerge = Mutex(())

    /// Every built-in kernel definition.
    public static let all: [KernelDefinition] = [
        KernelDefinition(
            id: "vector_add", summary: "c[i] = a[i] + b[i] (float32)",
            parameters: [
                .buffer("a", Float.self, extent: .argument(3)), .buffer("b", Float.self, extent: .argument(3)),
                .buffer("c", Float.self, extent: .argument(3)), .scalar(name: "n", type: .int32),
            ],
            portableText: BuiltinKernelText.vectorAdd, entryPoint: "gb_vector_add"
        ) { context in
            let a = try context.buffer(0, as: Float.self), b = try context.buffer(1, as: Float.self)
            let c = try context.buffer(2, as: Float.self)
            let n = try context.integer(3)
            let range = context.items.clamped(to: 0..<n)
            for i in range { c[i] = a[i] + b[i] }
        },
        KernelDefinition(
            id: "saxpy", summary: "y[i] = alpha * x[i] + y[i] (float32)",
            parameters: [
                .buffer("x", Float.self, extent: .argument(3)), .buffer("y", Float.self, extent: .argument(3)),
                .scalar(name: "alpha", type: .float32), .scalar(name: "n", type: .int32),
            ],
            portableText: BuiltinKernelText.saxpy, entryPoint: "gb_saxpy"
        ) { context in
            let x = try context.buffer(0, as: Float.self), y = try context.buffer(1, as: Float.self)
            let alpha = try context.float(2)
            for i in context.items.clamped(to: 0..<(try context.integer(3))) { y[i] = alpha * x[i] + y[i] }
        },
        KernelDefinition(
            id: "scale", summary: "y[i] = alpha * x[i] (float32)",
            parameters: [
                .buffer("x", Float.self, extent: .argument(3)), .buffer("y", Float.self, extent: .argument(3)),
                .scalar(name: "alpha", type: .float32), .scalar(name: "n", type: .int32),
            ],
            portableText: BuiltinKernelText.scale, entryPoint: "gb_scale"
        ) { context in
            let x = try context.buffer(0, as: Float.self), y = try context.buffer(1, as: Float.self)
            let alpha = try context.float(2)
            for i in context.items.clamped(to: 0..<(try context.integer(3))) { y[i] = alpha * x[i] }
        },
        KernelDefinition(
            id: "dot_partial",
            summary: "partial[g] = sum of x[i] * y[i] over group g's share of the input (reduction stage)",
            parameters: [
                .buffer("x", Float.self, extent: .argument(3)), .buffer("y", Float.self, extent: .argument(3)),
                .buffer("partial", Float.self, extent: .any), .scalar(name: "n", type: .int32),
            ],
            portableText: BuiltinKernelText.dotPartial, entryPoint: "gb_dot_partial", scheduling: .perGroup
        ) { context in
            let x = try context.buffer(0, as: Float.self), y = try context.buffer(1, as: Float.self)
            let partial = try context.buffer(2, as: Float.self)
            let n = try context.integer(3)
            try reduceGroups(context, n: n, into: partial) { i in Double(x[i]) * Double(y[i]) }
        },
        KernelDefinition(
            id: "sum_partial", summary: "partial[g] = sum of x[i] over group g's share of the input (reduction stage)",
            parameters: [
                .buffer("x", Float.self, extent: .argument(2)), .buffer("partial", Float.self, extent: .any),
                .scalar(name: "n", type: .int32),
            ],
            portableText: BuiltinKernelText.sumPartial, entryPoint: "gb_sum_partial", scheduling: .perGroup
        ) { context in
            let x = try context.buffer(0, as: Float.self)
            let partial = try context.buffer(1, as: Float.self)
            try reduceGroups(context, n: try context.integer(2), into: partial) { i in Double(x[i]) }
        },
        KernelDefinition(
            id: "matmul", summary: "C[MxN] = A[MxK] * B[KxN], float32 row-major, 16x16 tiles",
            parameters: [
                .buffer("A", Float.self, extent: .any), .buffer("B", Float.self, extent: .any),
                .buffer("C", Float.self, extent: .any), .scalar(name: "M", type: .int32),
                .scalar(name: "N", type: .int32), .scalar(name: "K", type: .int32),
            ],
            portableText: BuiltinKernelText.matmul, entryPoint: "gb_matmul"
        ) { context in
            // cblas_sgemm when a BLAS was found (BLASLibrary), else the hand-written tiled loop.
            try CPUMatmul.run(context)
        },
        KernelDefinition(
            id: "softmax_rows", summary: "y = softmax(x) along each row (float32, one group per row)",
            parameters: [
                .buffer("x", Float.self, extent: .any), .buffer("y", Float.self, extent: .any),
                .scalar(name: "rows", type: .int32), .scalar(name: "cols", type: .int32),
            ],
            portableText: BuiltinKernelText.softmaxRows, entryPoint: "gb_softmax_rows", scheduling: .perGroup
        ) { context in
            let x = try context.buffer(0, as: Float.self), y = try context.buffer(1, as: Float.self)
            let rows = try context.integer(2), cols = try context.integer(3)
            for r in context.groups where r < rows {
                let base = r * cols
                var m = -Float.infinity
                for c in 0..<cols { m = max(m, x[base + c]) }
                var sum: Float = 0
                for c in 0..<cols {
                    let e = (x[base + c] - m).exponential
                    y[base + c] = e
                    sum += e
                }
                let inverse = 1 / sum
                for c in 0..<cols { y[base + c] *= inverse }
            }
        },
        KernelDefinition(
            id: "cosine_scores", summary: "scores[q][r] = cosine similarity of queries[q] and matrix[r]",
            parameters: [
                .buffer("queries", Float.self, extent: .any), .buffer("matrix", Float.self, extent: .any),
                .buffer("scores", Float.self, extent: .any), .scalar(name: "queryCount", type: .int32),
                .scalar(name: "rows", type: .int32), .scalar(name: "dim", type: .int32),
            ],
            portableText: BuiltinKernelText.cosineScores, entryPoint: "gb_cosine_scores"
        ) { context in
            let queries = try context.buffer(0, as: Float.self), matrix = try context.buffer(1, as: Float.self)
            let scores = try context.buffer(2, as: Float.self)
            let queryCount = try context.integer(3), rows = try context.integer(4), dim = try context.integer(5)
            let gx = context.launch.groups.x, size = context.launch.groupSize.x
            for g in context.groups {
                let q = g / gx
                guard q < queryCount else { continue }
                let r0 = (g % gx) * size
                for r in r0..<min(rows, r0 + size) {
                    var dot: Float = 0, na: Float = 0, nb: Float = 0
                    for d in 0..<dim {
                        let u = queries[q * dim + d], v = matrix[r * dim + d]
                        dot += u * v; na += u * u; nb += v * v
                    }
                    let denom = na.squareRoot() * nb.squareRoot()
                    scores[q * rows + r] = denom > 0 ? dot / denom : 0
                }
            }
        },
        KernelDefinition(
            id: "topk_select",
            summary: "the k best scores per query, best first, ties to the lower index (consumes scores)",
            parameters: [
                .buffer("scores", Float.self, extent: .any), .buffer("outIndex", Int32.self, extent: .any),
                .buffer("outScore", Float.self, extent: .any), .scalar(name: "queryCount", type: .int32),
                .scalar(name: "rows", type: .int32), .scalar(name: "k", type: .int32),
            ],
            portableText: BuiltinKernelText.topkSelect, entryPoint: "gb_topk_select", scheduling: .perGroup
        ) { context in
            let scores = try context.buffer(0, as: Float.self)
            let outIndex = try context.buffer(1, as: Int32.self), outScore = try context.buffer(2, as: Float.self)
            let queryCount = try context.integer(3), rows = try context.integer(4), k = try context.integer(5)
            for q in context.groups where q < queryCount {
                let base = q * rows
                for j in 0..<k {
                    var best = -Float.infinity, bestIndex = -1
                    for r in 0..<rows where scores[base + r] > best { best = scores[base + r]; bestIndex = r }
                    outIndex[q * k + j] = Int32(bestIndex)
                    outScore[q * k + j] = best
                    if bestIndex >= 0 { scores[base + bestIndex] = -.infinity }
                }
            }
        },
        KernelDefinition(
            id: "histogram", summary: "counts[b] += values in bin b of [lo, hi] (uint32 counts, at most 256 bins)",
            parameters: [
                .buffer("values", Float.self, extent: .argument(2)),
                .buffer("counts", UInt32.self, extent: .argument(3)),
                .scalar(name: "n", type: .int32), .scalar(name: "bins", type: .int32),
                .scalar(name: "lo", type: .float32), .scalar(name: "hi", type: .float32),
            ],
            portableText: BuiltinKernelText.histogram, entryPoint: "gb_histogram", scheduling: .perGroup
        ) { context in
            let values = try context.buffer(0, as: Float.self), counts = try context.buffer(1, as: UInt32.self)
            let n = try context.integer(2), bins = try context.integer(3)
            let lo = try context.float(4), hi = try context.float(5)
            let scale = Float(bins) / (hi - lo)
            var local = [UInt32](repeating: 0, count: bins)
            try forEachStrided(context, n: n) { i in
                let v = values[i]
                if v >= lo && v <= hi { local[min(bins - 1, Int((v - lo) * scale))] += 1 }
            }
            histogramMerge.withLock { _ in for b in 0..<bins { counts[b] &+= local[b] } }
        },
    ]

    /// Group g's share of `0 ..< n` on the CPU: one contiguous chunk of about n / groups (the GB_CONTIGUOUS_ITEMS
    /// layout), which streams memory far better on a CPU than a grid-stride walk.
    static func share(_ g: Int, n: Int, groups: Int) -> Range<Int> {
        let chunk = (n + groups - 1) / groups
        let start = min(n, g * chunk)
        return start..<min(n, start + chunk)
    }

    /// Visits every index the call's groups own.
    static func forEachStrided(_ context: CPUKernelContext, n: Int, _ body: (Int) throws -> Void) throws {
        for g in context.groups {
            for i in share(g, n: n, groups: context.launch.groups.x) { try body(i) }
        }
    }

    /// partial[g] = sum of `term(i)` over group g's share, accumulated in double.
    static func reduceGroups(
        _ context: CPUKernelContext, n: Int, into partial: UnsafeMutableBufferPointer<Float>,
        _ term: (Int) -> Double
    ) throws {
        for g in context.groups {
            var acc = 0.0
            for i in share(g, n: n, groups: context.launch.groups.x) { acc += term(i) }
            partial[g] = Float(acc)
        }
    }
}

extension Float {
    /// e^self, by the C library's `expf`.
    var exponential: Float { expf(self) }
}
