#if SwiftKernels
    import GPUBridge
    import GPUBridgeKernels

    // Swift kernels (`@GPUKernel`) written as twins of the built-in kernels (BuiltinKernelText): here those whose text
    // needs no group-shared memory and no barrier, in BuiltinSwiftGroupTwins.swift the others. Each has the
    // built-in's parameter list (names, types, order) and its work distribution, so `bench twins` compares the two on
    // the same launches and the tests (BuiltinSwiftTwinTests) hold each against its built-in with KernelValidator.

    /// Twin of `vector_add`: one element per work-item, guarded by `i < n`.
    @GPUKernel
    func swiftVectorAdd(
        _ item: WorkItem, a: DeviceArray<Float>, b: DeviceArray<Float>, c: MutableDeviceArray<Float>, n: Int32
    ) {
        let i = item.globalID(0)
        if i < n { c[i] = a[i] + b[i] }
    }

    /// Twin of `saxpy`: y[i] = alpha * x[i] + y[i], one element per work-item.
    @GPUKernel
    func swiftSaxpy(_ item: WorkItem, x: DeviceArray<Float>, y: MutableDeviceArray<Float>, alpha: Float, n: Int32) {
        let i = item.globalID(0)
        if i < n { y[i] = alpha * x[i] + y[i] }
    }

    /// Twin of `scale`: y[i] = alpha * x[i], one element per work-item.
    @GPUKernel
    func swiftScale(_ item: WorkItem, x: DeviceArray<Float>, y: MutableDeviceArray<Float>, alpha: Float, n: Int32) {
        let i = item.globalID(0)
        if i < n { y[i] = alpha * x[i] }
    }

    /// Twin of `cosine_scores`: work-item (r, q) of a (rows, queries) launch scores matrix row r against query q.
    /// The built-in offsets a pointer per row (`queries + (gb_long)q * dim`); the subset has no pointers, so the row's
    /// 64-bit offset is added to each index instead.
    @GPUKernel
    func swiftCosineScores(
        _ item: WorkItem, queries: DeviceArray<Float>, matrix: DeviceArray<Float>, scores: MutableDeviceArray<Float>,
        queryCount: Int32, rows: Int32, dim: Int32
    ) {
        let r = item.globalID(0)
        let q = item.globalID(1)
        if r >= rows || q >= queryCount { return }
        let a = Int64(q) * Int64(dim)
        let b = Int64(r) * Int64(dim)
        var dot: Float = 0
        var na: Float = 0
        var nb: Float = 0
        for d in 0..<dim {
            let u = queries[a + Int64(d)]
            let v = matrix[b + Int64(d)]
            dot += u * v
            na += u * u
            nb += v * v
        }
        let denom = sqrt(na) * sqrt(nb)
        scores[Int64(q) * Int64(rows) + Int64(r)] = denom > 0 ? dot / denom : 0
    }

    /// The twins, each with the id of the built-in it stands for.
    enum BuiltinSwiftTwins {
        static let all: [(builtin: String, twin: KernelDefinition)] = [
            ("vector_add", swiftVectorAddKernel), ("saxpy", swiftSaxpyKernel), ("scale", swiftScaleKernel),
            ("dot_partial", swiftDotPartialKernel), ("sum_partial", swiftSumPartialKernel),
            ("matmul", swiftMatmulKernel), ("softmax_rows", swiftSoftmaxRowsKernel),
            ("cosine_scores", swiftCosineScoresKernel), ("topk_select", swiftTopkSelectKernel),
            ("histogram", swiftHistogramKernel),
        ]
    }
#endif
