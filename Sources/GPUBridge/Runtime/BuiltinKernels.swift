import Glibc
import Synchronization

/// The built-in kernel library: each kernel in the portable dialect (CUDA and OpenCL) and in Swift (CPU backend).
///
/// All kernels take 32-bit `int` counts, so a single launch covers at most `Int32.max` elements.
public enum BuiltinKernels {
    static let group = BuiltinKernelText.reductionGroupSize
    static let tile = BuiltinKernelText.matmulTile
    /// The launches a portable text with a `group`-element scratch array and a tree reduction over it allows: groups
    /// of at most `group` work-items along x, a power of two.
    static let treeReduction = LaunchLimits(maxGroupWidth: group, powerOfTwoWidth: true)
    /// Serialises the CPU histogram's merge of per-chunk counts into the shared result.
    private static let histogramMerge = Mutex(())

    /// Every built-in kernel definition.
    public static let all: [KernelDefinition] = [
        KernelDefinition(
            id: "vector_add", summary: "c[i] = a[i] + b[i] (float32)",
            parameters: [
                .buffer("a", Float.self, extent: .argument(3), access: .readOnly),
                .buffer("b", Float.self, extent: .argument(3), access: .readOnly),
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
                .buffer("x", Float.self, extent: .argument(3), access: .readOnly),
                .buffer("y", Float.self, extent: .argument(3)),
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
                .buffer("x", Float.self, extent: .argument(3), access: .readOnly),
                .buffer("y", Float.self, extent: .argument(3)),
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
                .buffer("x", Float.self, extent: .argument(3), access: .readOnly),
                .buffer("y", Float.self, extent: .argument(3), access: .readOnly),
                .buffer("partial", Float.self, extent: .groupCount), .scalar(name: "n", type: .int32),
            ],
            portableText: BuiltinKernelText.dotPartial, entryPoint: "gb_dot_partial", scheduling: .perByte
        ) { context in
            let x = try context.buffer(0, as: Float.self), y = try context.buffer(1, as: Float.self)
            let partial = try context.buffer(2, as: Float.self)
            let n = try context.integer(3)
            try reduceGroups(context, n: n, into: partial) { range in
                // Empty buffers have no address; their shares are empty and sum to 0.
                guard let xs = x.baseAddress, let ys = y.baseAddress else { return 0 }
                return CPUVectorMath.dot(xs, ys, range)
            }
        }.limited(treeReduction),
        KernelDefinition(
            id: "sum_partial", summary: "partial[g] = sum of x[i] over group g's share of the input (reduction stage)",
            parameters: [
                .buffer("x", Float.self, extent: .argument(2), access: .readOnly),
                .buffer("partial", Float.self, extent: .groupCount),
                .scalar(name: "n", type: .int32),
            ],
            portableText: BuiltinKernelText.sumPartial, entryPoint: "gb_sum_partial", scheduling: .perByte
        ) { context in
            let x = try context.buffer(0, as: Float.self)
            let partial = try context.buffer(1, as: Float.self)
            try reduceGroups(context, n: try context.integer(2), into: partial) { range in
                guard let xs = x.baseAddress else { return 0 }
                return CPUVectorMath.sum(xs, range)
            }
        }.limited(treeReduction),
        KernelDefinition(
            id: "matmul", summary: "C[MxN] = A[MxK] * B[KxN], float32 row-major, 16x16 tiles",
            parameters: [
                .buffer("A", Float.self, extent: .product([3, 5]), access: .readOnly),
                .buffer("B", Float.self, extent: .product([5, 4]), access: .readOnly),
                .buffer("C", Float.self, extent: .product([3, 4])), .scalar(name: "M", type: .int32),
                .scalar(name: "N", type: .int32), .scalar(name: "K", type: .int32),
            ],
            portableText: BuiltinKernelText.matmul, entryPoint: "gb_matmul", scheduling: CPUMatmul.scheduling
        ) { context in
            // cblas_sgemm when a BLAS was found (BLASLibrary), else the hand-written tiled loop.
            try CPUMatmul.run(context)
        }.computing(.sgemm).limited(LaunchLimits(groupSize: Extent3(tile, tile))),
        KernelDefinition(
            id: "softmax_rows", summary: "y = softmax(x) along each row (float32, one group per row)",
            parameters: [
                .buffer("x", Float.self, extent: .product([2, 3]), access: .readOnly),
                .buffer("y", Float.self, extent: .product([2, 3])),
                .scalar(name: "rows", type: .int32), .scalar(name: "cols", type: .int32),
            ],
            portableText: BuiltinKernelText.softmaxRows, entryPoint: "gb_softmax_rows", scheduling: .perByte
        ) { context in
            let x = try context.buffer(0, as: Float.self), y = try context.buffer(1, as: Float.self)
            let rows = try context.integer(2), cols = try context.integer(3)
            guard let xs = x.baseAddress, let ys = y.baseAddress else { return }
            for r in context.groups where r < rows {
                let row = xs + r * cols, out = ys + r * cols
                CPUVectorMath.softmaxRow(row, out, count: cols)
            }
        }.limited(treeReduction),
        KernelDefinition(
            id: "cosine_scores", summary: "scores[q][r] = cosine similarity of queries[q] and matrix[r]",
            parameters: [
                .buffer("queries", Float.self, extent: .product([3, 5]), access: .readOnly),
                .buffer("matrix", Float.self, extent: .product([4, 5]), access: .readOnly),
                .buffer("scores", Float.self, extent: .product([3, 4])), .scalar(name: "queryCount", type: .int32),
                .scalar(name: "rows", type: .int32), .scalar(name: "dim", type: .int32),
            ],
            portableText: BuiltinKernelText.cosineScores, entryPoint: "gb_cosine_scores"
        ) { context in
            let queries = try context.buffer(0, as: Float.self), matrix = try context.buffer(1, as: Float.self)
            let scores = try context.buffer(2, as: Float.self)
            let queryCount = try context.integer(3), rows = try context.integer(4), dim = try context.integer(5)
            let blocks = context.launch.groups.x, queryGroups = context.launch.groups.y
            let size = context.launch.groupSize.x
            guard queryCount >= 0, rows >= 0, dim >= 0 else {
                throw GPUBridgeError.argumentMismatch(
                    kernel: context.kernel,
                    detail: "queryCount, rows, dim = \(queryCount), \(rows), \(dim): each must be at least 0")
            }
            for (name, buffer, needed) in [
                ("queries", queries, queryCount * dim), ("matrix", matrix, rows * dim),
                ("scores", scores, queryCount * rows),
            ] where buffer.count < needed {
                throw GPUBridgeError.argumentMismatch(
                    kernel: context.kernel,
                    detail: "\(name) holds \(buffer.count) floats, queryCount, rows, dim = \(queryCount), \(rows), "
                        + "\(dim) need \(needed)")
            }
            guard queryCount > 0, rows > 0, let qs = queries.baseAddress, let ms = matrix.baseAddress,
                let out = scores.baseAddress
            else { return }
            // On the CPU a group index is read block-major (t = block * queryGroups + q), a different but equally
            // complete assignment of the same (block, query) pairs: the queries of one block of rows then run back to
            // back, so the block is read from memory once and its row norms are computed once, not once per query.
            // The loops are C compiled per instruction set (`CPUVectorMath.cosineRows`).
            var norms = [Float](repeating: 0, count: size)
            var normsOf = -1
            norms.withUnsafeMutableBufferPointer { norms in
                for t in context.groups {
                    let block = t / queryGroups, q = t % queryGroups
                    guard q < queryCount, block < blocks else { continue }
                    let r0 = block * size, r1 = min(rows, r0 + size)
                    guard r0 < r1 else { continue }
                    if normsOf != block {
                        CPUVectorMath.rowNorms(ms + r0 * dim, count: r1 - r0, dim: dim, into: norms.baseAddress!)
                        normsOf = block
                    }
                    let query = qs + q * dim
                    CPUVectorMath.cosineRows(
                        query: query, norm: CPUVectorMath.shortDot(query, query, count: dim).squareRoot(),
                        rows: ms + r0 * dim, rowNorms: norms.baseAddress!, count: r1 - r0, dim: dim,
                        into: out + q * rows + r0)
                }
            }
        },
        KernelDefinition(
            id: "topk_select",
            summary: "the k best scores per query, best first, ties to the lower index (may overwrite scores)",
            parameters: [
                .buffer("scores", Float.self, extent: .product([3, 4])),
                .buffer("outIndex", Int32.self, extent: .product([3, 5])),
                .buffer("outScore", Float.self, extent: .product([3, 5])), .scalar(name: "queryCount", type: .int32),
                .scalar(name: "rows", type: .int32), .scalar(name: "k", type: .int32),
            ],
            portableText: BuiltinKernelText.topkSelect, entryPoint: "gb_topk_select", scheduling: .perByte
        ) { context in
            let scores = try context.buffer(0, as: Float.self)
            let outIndex = try context.buffer(1, as: Int32.self), outScore = try context.buffer(2, as: Float.self)
            let queryCount = try context.integer(3), rows = try context.integer(4), k = try context.integer(5)
            guard queryCount >= 0, rows >= 0, k >= 1 else {
                throw GPUBridgeError.argumentMismatch(
                    kernel: context.kernel,
                    detail: "queryCount, rows, k = \(queryCount), \(rows), \(k): queryCount and rows must be at "
                        + "least 0, k at least 1")
            }
            for (name, count, needed) in [
                ("scores", scores.count, queryCount * rows), ("outIndex", outIndex.count, queryCount * k),
                ("outScore", outScore.count, queryCount * k),
            ] where count < needed {
                throw GPUBridgeError.argumentMismatch(
                    kernel: context.kernel,
                    detail: "\(name) holds \(count) elements, queryCount, rows, k = \(queryCount), \(rows), \(k) need "
                        + "\(needed)")
            }
            guard queryCount > 0 else { return }
            // One pass per query keeping the k best so far, best first: a row enters only when it beats the k-th
            // (strictly, so of equal scores the lower index stays ahead), the same answer as k passes of "take the
            // best, remove it". The scan for the next row above the k-th is C, 16 comparisons at a time
            // (`CPUVectorMath.firstAbove`). The scores are left as they are.
            var bestScore = [Float](repeating: -.infinity, count: k), bestIndex = [Int32](repeating: -1, count: k)
            for q in context.groups where q < queryCount {
                for j in 0..<k {
                    bestScore[j] = -.infinity
                    bestIndex[j] = -1
                }
                // With no rows, every query's k answers stay (-1, -infinity).
                if rows > 0, let all = scores.baseAddress {
                    let row = UnsafePointer(all + q * rows)
                    var r = 0
                    while true {
                        r += CPUVectorMath.firstAbove(row + r, count: rows - r, threshold: bestScore[k - 1])
                        guard r < rows else { break }
                        let s = row[r]
                        var j = k - 1
                        while j > 0, s > bestScore[j - 1] {
                            bestScore[j] = bestScore[j - 1]
                            bestIndex[j] = bestIndex[j - 1]
                            j -= 1
                        }
                        bestScore[j] = s
                        bestIndex[j] = Int32(r)
                        r += 1
                    }
                }
                for j in 0..<k {
                    outIndex[q * k + j] = bestIndex[j]
                    outScore[q * k + j] = bestScore[j]
                }
            }
        }.limited(
            LaunchLimits(maxGroupWidth: group, powerOfTwoWidth: true, scalarRanges: [5: 1...Int(Int32.max)])),
        KernelDefinition(
            id: "histogram", summary: "counts[b] += values in bin b of [lo, hi] (uint32 counts, at most 256 bins)",
            parameters: [
                .buffer("values", Float.self, extent: .argument(2), access: .readOnly),
                .buffer("counts", UInt32.self, extent: .argument(3)),
                .scalar(name: "n", type: .int32), .scalar(name: "bins", type: .int32),
                .scalar(name: "lo", type: .float32), .scalar(name: "hi", type: .float32),
            ],
            portableText: BuiltinKernelText.histogram, entryPoint: "gb_histogram", scheduling: .perByte
        ) { context in
            let values = try context.buffer(0, as: Float.self), counts = try context.buffer(1, as: UInt32.self)
            let n = try context.integer(2), bins = try context.integer(3)
            let lo = try context.float(4), hi = try context.float(5)
            guard (1...BuiltinKernelText.histogramMaxBins).contains(bins) else {
                throw GPUBridgeError.argumentMismatch(
                    kernel: context.kernel,
                    detail: "bins = \(bins): must be 1...\(BuiltinKernelText.histogramMaxBins)")
            }
            let scale = Float(bins) / (hi - lo)
            var local = [UInt32](repeating: 0, count: bins)
            try forEachStrided(context, n: n) { i in
                let v = values[i]
                if v >= lo && v <= hi { local[min(bins - 1, Int((v - lo) * scale))] += 1 }
            }
            histogramMerge.withLock { _ in for b in 0..<bins { counts[b] &+= local[b] } }
        }.limited(LaunchLimits(scalarRanges: [3: 1...BuiltinKernelText.histogramMaxBins])),
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

    /// partial[g] = `reduce(share)` over group g's share of the input.
    static func reduceGroups(
        _ context: CPUKernelContext, n: Int, into partial: UnsafeMutableBufferPointer<Float>,
        _ reduce: (Range<Int>) -> Double
    ) throws {
        for g in context.groups { partial[g] = Float(reduce(share(g, n: n, groups: context.launch.groups.x))) }
    }
}
