/// Typed operations over the built-in kernels. Each one uploads its inputs, launches, and downloads the result.
///
/// On the CPU backend the inputs are not uploaded: a kernel parameter declared `.readOnly` reads the caller's array
/// in place (`Device.borrowBuffer`), as numpy reads its arrays, so a sum reads its input once instead of copying it
/// first. Results are still read back into new arrays.
public enum Operations {
    /// Two equal-length float vectors.
    public struct VectorPair: Sendable {
        public var a: [Float]
        public var b: [Float]
        public init(_ a: [Float], _ b: [Float]) { self.a = a; self.b = b }
    }

    static func checkCount(_ name: String, _ count: Int) throws(GPUBridgeError) {
        guard count >= 1, count <= Int(Int32.max) else {
            throw .invalidArgument(name: name, value: String(count), limit: "1...\(Int32.max) elements")
        }
    }

    /// `values` as parameter `parameter` of kernel `kernel` reads them: the array itself on the CPU backend where
    /// the catalog's definition declares that parameter `.readOnly` (no copy), otherwise a copy on the device.
    static func input(_ values: [Float], _ kernel: String, _ parameter: Int, _ context: ExecutionContext)
        throws(GPUBridgeError) -> Buffer<Float>
    {
        if context.device.id.backend == .cpu, let parameters = try? context.catalog.definition(kernel).parameters,
            parameters.indices.contains(parameter), case .buffer(_, _, _, .readOnly) = parameters[parameter],
            let borrowed = context.device.borrowBuffer(values)
        {
            return borrowed
        }
        return try context.device.makeBuffer(copying: values)
    }

    static func checkEqual(_ name: String, _ a: Int, _ b: Int) throws(GPUBridgeError) {
        guard a == b else { throw .sizeMismatch(name: name, expected: a, actual: b) }
    }

    /// c = a + b.
    public static let vectorAdd = Operation<VectorPair, [Float]>(
        name: "vector-add", kernels: ["vector_add"], footprint: { 12 * $0.a.count }
    ) { context, input throws(GPUBridgeError) in
        try checkCount("a.count", input.a.count)
        try checkEqual("b.count", input.a.count, input.b.count)
        let device = context.device
        let n = input.a.count
        let a = try Operations.input(input.a, "vector_add", 0, context),
            b = try Operations.input(input.b, "vector_add", 1, context)
        let c = try device.makeBuffer(of: Float.self, count: n)
        try await device.launch(
            try context.kernel("vector_add"), .covering(n),
            arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(Int32(n))])
        return try c.toArray()
    }

    /// y = alpha * x + y.
    public static let saxpy = Operation<(alpha: Float, x: [Float], y: [Float]), [Float]>(
        name: "saxpy", kernels: ["saxpy"], footprint: { 8 * $0.x.count }
    ) { context, input throws(GPUBridgeError) in
        try checkCount("x.count", input.x.count)
        try checkEqual("y.count", input.x.count, input.y.count)
        let device = context.device
        let n = input.x.count
        let x = try device.makeBuffer(copying: input.x), y = try device.makeBuffer(copying: input.y)
        try await device.launch(
            try context.kernel("saxpy"), .covering(n),
            arguments: [.buffer(x), .buffer(y), .float(input.alpha), .int32(Int32(n))])
        return try y.toArray()
    }

    /// y = alpha * x.
    public static let scale = Operation<(alpha: Float, x: [Float]), [Float]>(
        name: "scale", kernels: ["scale"], footprint: { 8 * $0.x.count }
    ) { context, input throws(GPUBridgeError) in
        try checkCount("x.count", input.x.count)
        let device = context.device
        let n = input.x.count
        let x = try Operations.input(input.x, "scale", 0, context)
        let y = try device.makeBuffer(of: Float.self, count: n)
        try await device.launch(
            try context.kernel("scale"), .covering(n),
            arguments: [.buffer(x), .buffer(y), .float(input.alpha), .int32(Int32(n))])
        return try y.toArray()
    }

    /// Groups for a reduction over `n` elements: enough to cover it, at most 1024 and within the device's limit.
    static func reductionGroups(_ n: Int, _ device: Device) throws(GPUBridgeError) -> Int {
        let size = BuiltinKernels.group
        guard device.info.maxGroupItems >= size else {
            throw .unsupported(
                feature: "reductions with \(size)-item groups (device allows \(device.info.maxGroupItems))",
                backend: device.id.backend.rawValue)
        }
        return max(1, min(reductionGroupLimit(device), (n + size - 1) / size, device.info.maxGroups.first ?? 1))
    }

    /// Most groups a reduction uses: 1024 on a discrete GPU (enough to fill it), 4 per compute unit on a device
    /// that shares host memory (a CPU: fewer, longer-running groups stream memory better than many short ones).
    public static func reductionGroupLimit(_ device: Device) -> Int {
        device.info.capabilities.unifiedMemory ? max(1, 4 * device.info.computeUnits) : 1024
    }

    /// Sums `partial[0 ..< count]` on the device with one group; returns the total.
    static func finishSum(_ partial: Buffer<Float>, count: Int, _ context: ExecutionContext)
        async throws(GPUBridgeError) -> Float
    {
        let device = context.device
        let total = try device.makeBuffer(of: Float.self, count: 1)
        try await device.launch(
            try context.kernel("sum_partial"),
            Launch(groups: Extent3(1), groupSize: Extent3(BuiltinKernels.group)),
            arguments: [.buffer(partial), .buffer(total), .int32(Int32(count))])
        return try total.toArray()[0]
    }

    /// The dot product of x and y (a two-stage tree reduction, no atomics).
    public static let dot = Operation<VectorPair, Float>(
        name: "dot", kernels: ["dot_partial", "sum_partial"], footprint: { 8 * $0.a.count }
    ) { context, input throws(GPUBridgeError) in
        try checkCount("a.count", input.a.count)
        try checkEqual("b.count", input.a.count, input.b.count)
        let device = context.device
        let n = input.a.count
        let groups = try reductionGroups(n, device)
        let x = try Operations.input(input.a, "dot_partial", 0, context),
            y = try Operations.input(input.b, "dot_partial", 1, context)
        let partial = try device.makeBuffer(of: Float.self, count: groups)
        try await device.launch(
            try context.kernel("dot_partial"),
            Launch(groups: Extent3(groups), groupSize: Extent3(BuiltinKernels.group)),
            arguments: [.buffer(x), .buffer(y), .buffer(partial), .int32(Int32(n))])
        return try await finishSum(partial, count: groups, context)
    }

    /// The sum of x (a two-stage tree reduction, no atomics).
    public static let sum = Operation<[Float], Float>(
        name: "sum", kernels: ["sum_partial"], footprint: { 4 * $0.count }
    ) { context, input throws(GPUBridgeError) in
        try checkCount("x.count", input.count)
        let device = context.device
        let groups = try reductionGroups(input.count, device)
        let x = try Operations.input(input, "sum_partial", 0, context)
        let partial = try device.makeBuffer(of: Float.self, count: groups)
        try await device.launch(
            try context.kernel("sum_partial"),
            Launch(groups: Extent3(groups), groupSize: Extent3(BuiltinKernels.group)),
            arguments: [.buffer(x), .buffer(partial), .int32(Int32(input.count))])
        return try await finishSum(partial, count: groups, context)
    }

    /// Row-major matrices for `matmul`: `a` is m x k, `b` is k x n.
    public struct MatrixPair: Sendable {
        public var a: [Float], b: [Float], m: Int, n: Int, k: Int
        public init(a: [Float], b: [Float], m: Int, n: Int, k: Int) {
            self.a = a; self.b = b; self.m = m; self.n = n; self.k = k
        }
    }

    /// C = A * B (float32, tiled).
    public static let matmul = Operation<MatrixPair, [Float]>(
        name: "matmul", kernels: ["matmul"], footprint: { 4 * ($0.a.count + $0.b.count + $0.m * $0.n) }
    ) { context, input throws(GPUBridgeError) in
        for (name, value) in [("m", input.m), ("n", input.n), ("k", input.k)] { try checkCount(name, value) }
        try checkEqual("a.count (m * k)", input.m * input.k, input.a.count)
        try checkEqual("b.count (k * n)", input.k * input.n, input.b.count)
        let device = context.device
        let tile = BuiltinKernels.tile
        let a = try Operations.input(input.a, "matmul", 0, context),
            b = try Operations.input(input.b, "matmul", 1, context)
        let c = try device.makeBuffer(of: Float.self, count: input.m * input.n)
        try await device.launch(
            try context.kernel("matmul"),
            Launch(
                groups: Extent3((input.n + tile - 1) / tile, (input.m + tile - 1) / tile),
                groupSize: Extent3(tile, tile)),
            arguments: [
                .buffer(a), .buffer(b), .buffer(c), .int32(Int32(input.m)),
                .int32(Int32(input.n)), .int32(Int32(input.k)),
            ])
        return try c.toArray()
    }

    /// Softmax along each row of a row-major `rows x cols` matrix.
    public static let softmax = Operation<(x: [Float], rows: Int, cols: Int), [Float]>(
        name: "softmax", kernels: ["softmax_rows"], footprint: { 8 * $0.x.count }
    ) { context, input throws(GPUBridgeError) in
        try checkCount("rows", input.rows)
        try checkCount("cols", input.cols)
        try checkEqual("x.count (rows * cols)", input.rows * input.cols, input.x.count)
        let device = context.device
        let x = try Operations.input(input.x, "softmax_rows", 0, context)
        let y = try device.makeBuffer(of: Float.self, count: input.x.count)
        try await device.launch(
            try context.kernel("softmax_rows"),
            Launch(groups: Extent3(input.rows), groupSize: Extent3(BuiltinKernels.group)),
            arguments: [.buffer(x), .buffer(y), .int32(Int32(input.rows)), .int32(Int32(input.cols))])
        return try y.toArray()
    }

    /// One answer of a top-k query: a matrix row and its cosine similarity.
    public struct Match: Sendable, Hashable, Codable {
        public var index: Int
        public var score: Float
    }

    /// The k rows of a resident `rows x dim` matrix most similar (cosine) to each query, best first, ties to the
    /// lower index. Works on device buffers, so the matrix is not copied per query.
    public static func cosineTopK(
        queries: Buffer<Float>, queryCount: Int, matrix: Buffer<Float>, rows: Int, dim: Int,
        k: Int, context: ExecutionContext
    ) async throws(GPUBridgeError) -> [[Match]] {
        try checkCount("queryCount", queryCount)
        try checkCount("rows", rows)
        try checkCount("dim", dim)
        guard k >= 1, k <= rows else {
            throw .invalidArgument(name: "k", value: String(k), limit: "1...\(rows) (the matrix's rows)")
        }
        try checkRange(name: "queries", offset: 0, length: queryCount * dim, limit: queries.count)
        try checkRange(name: "matrix", offset: 0, length: rows * dim, limit: matrix.count)
        let device = context.device
        let size = BuiltinKernels.group
        let scores = try device.makeBuffer(of: Float.self, count: queryCount * rows)
        try await device.launch(
            try context.kernel("cosine_scores"),
            Launch(groups: Extent3((rows + size - 1) / size, queryCount), groupSize: Extent3(size, 1)),
            arguments: [
                .buffer(queries), .buffer(matrix), .buffer(scores), .int32(Int32(queryCount)),
                .int32(Int32(rows)), .int32(Int32(dim)),
            ])
        let indices = try device.makeBuffer(of: Int32.self, count: queryCount * k)
        let best = try device.makeBuffer(of: Float.self, count: queryCount * k)
        try await device.launch(
            try context.kernel("topk_select"),
            Launch(groups: Extent3(queryCount), groupSize: Extent3(size)),
            arguments: [
                .buffer(scores), .buffer(indices), .buffer(best), .int32(Int32(queryCount)),
                .int32(Int32(rows)), .int32(Int32(k)),
            ])
        let i = try indices.toArray(), s = try best.toArray()
        return (0..<queryCount).map { q in (0..<k).map { j in Match(index: Int(i[q * k + j]), score: s[q * k + j]) } }
    }

    /// Top-k cosine similarity of `queries` (queryCount x dim) against `matrix` (rows x dim), uploading both.
    public static let topK = Operation<(queries: [Float], matrix: [Float], dim: Int, k: Int), [[Match]]>(
        name: "cosine-top-k", kernels: ["cosine_scores", "topk_select"],
        footprint: { 4 * ($0.queries.count + $0.matrix.count) }
    ) { context, input throws(GPUBridgeError) in
        try checkCount("dim", input.dim)
        guard input.queries.count % input.dim == 0, input.matrix.count % input.dim == 0 else {
            throw .sizeMismatch(
                name: "queries.count and matrix.count % dim", expected: 0, actual: input.queries.count % input.dim)
        }
        let q = try Operations.input(input.queries, "cosine_scores", 0, context)
        let m = try Operations.input(input.matrix, "cosine_scores", 1, context)
        return try await cosineTopK(
            queries: q, queryCount: input.queries.count / input.dim, matrix: m,
            rows: input.matrix.count / input.dim, dim: input.dim, k: input.k, context: context)
    }

    /// Counts of `values` in `bins` equal bins over [lo, hi] (values outside are ignored; hi lands in the last bin).
    public static let histogram = Operation<(values: [Float], bins: Int, lo: Float, hi: Float), [UInt32]>(
        name: "histogram", kernels: ["histogram"], footprint: { 4 * $0.values.count }
    ) { context, input throws(GPUBridgeError) in
        try checkCount("values.count", input.values.count)
        guard input.bins >= 1, input.bins <= BuiltinKernelText.histogramMaxBins else {
            throw .invalidArgument(
                name: "bins", value: String(input.bins), limit: "1...\(BuiltinKernelText.histogramMaxBins)")
        }
        guard input.lo < input.hi, input.lo.isFinite, input.hi.isFinite else {
            throw .invalidArgument(
                name: "lo..hi", value: "\(input.lo)..\(input.hi)", limit: "finite bounds with lo < hi")
        }
        let device = context.device
        let n = input.values.count
        let values = try Operations.input(input.values, "histogram", 0, context)
        let counts = try device.makeBuffer(of: UInt32.self, count: input.bins)
        try await counts.fill(0)
        let groups = try reductionGroups(n, device)
        try await device.launch(
            try context.kernel("histogram"),
            Launch(groups: Extent3(groups), groupSize: Extent3(BuiltinKernels.group)),
            arguments: [
                .buffer(values), .buffer(counts), .int32(Int32(n)), .int32(Int32(input.bins)),
                .float(input.lo), .float(input.hi),
            ])
        return try counts.toArray()
    }
}
