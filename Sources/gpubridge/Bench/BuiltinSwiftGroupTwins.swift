#if SwiftKernels
    import GPUBridge
    import GPUBridgeKernels

    // Swift twins of the built-in kernels whose text uses group-shared memory and barriers: the same parameters, the
    // same groups, the same trees in shared memory, written with `SharedArray` and `item.barrier()`. On the CPU
    // backend each runs as the macro's split body (docs/SWIFT-KERNELS.md, "Barriers on the CPU"), not as the
    // built-in's hand-written Swift, which does the same work another way (BuiltinKernels).

    /// Twin of `dot_partial`: one partial dot product per group of 256, the input visited as the built-in's
    /// `GB_FOR_EACH_ITEM` does (`item.contiguousItems`).
    @GPUKernel
    func swiftDotPartial(
        _ item: WorkItem, x: DeviceArray<Float>, y: DeviceArray<Float>, partial: MutableDeviceArray<Float>, n: Int32
    ) {
        let scratch = SharedArray<Float>(count: 256)
        let lid = item.localID(0)
        var acc: Float = 0
        // The built-in's GB_FOR_EACH_ITEM: a contiguous chunk per work-item on CPU devices, grid-stride elsewhere.
        let size = item.globalSize(0)
        let chunk = item.contiguousItems ? (n + size - 1) / size : 1
        var i = item.contiguousItems ? item.globalID(0) * chunk : item.globalID(0)
        let end = item.contiguousItems ? min(n, i + chunk) : n
        let step = item.contiguousItems ? 1 : size
        while i < end {
            acc += x[i] * y[i]
            i += step
        }
        scratch[lid] = acc
        item.barrier()
        var s = item.localSize(0) / 2
        while s > 0 {
            if lid < s { scratch[lid] += scratch[lid + s] }
            item.barrier()
            s /= 2
        }
        if lid == 0 { partial[item.groupID(0)] = scratch[0] }
    }

    /// Twin of `sum_partial`: one partial sum per group of 256, visited as `swiftDotPartial` does.
    @GPUKernel
    func swiftSumPartial(_ item: WorkItem, x: DeviceArray<Float>, partial: MutableDeviceArray<Float>, n: Int32) {
        let scratch = SharedArray<Float>(count: 256)
        let lid = item.localID(0)
        var acc: Float = 0
        // The built-in's GB_FOR_EACH_ITEM: a contiguous chunk per work-item on CPU devices, grid-stride elsewhere.
        let size = item.globalSize(0)
        let chunk = item.contiguousItems ? (n + size - 1) / size : 1
        var i = item.contiguousItems ? item.globalID(0) * chunk : item.globalID(0)
        let end = item.contiguousItems ? min(n, i + chunk) : n
        let step = item.contiguousItems ? 1 : size
        while i < end {
            acc += x[i]
            i += step
        }
        scratch[lid] = acc
        item.barrier()
        var s = item.localSize(0) / 2
        while s > 0 {
            if lid < s { scratch[lid] += scratch[lid + s] }
            item.barrier()
            s /= 2
        }
        if lid == 0 { partial[item.groupID(0)] = scratch[0] }
    }

    /// Twin of `matmul`: C = A * B, row-major, 16 x 16 tiles in shared memory.
    @GPUKernel
    func swiftMatmul(
        _ item: WorkItem, A: DeviceArray<Float>, B: DeviceArray<Float>, C: MutableDeviceArray<Float>, M: Int32,
        N: Int32, K: Int32
    ) {
        let As = SharedArray<Float>(count: 256)
        let Bs = SharedArray<Float>(count: 256)
        let tx = item.localID(0)
        let ty = item.localID(1)
        let col = item.groupID(0) * 16 + tx
        let row = item.groupID(1) * 16 + ty
        var acc: Float = 0
        for t in stride(from: Int32(0), to: K, by: 16) {
            As[ty * 16 + tx] = row < M && t + tx < K ? A[Int(row) * Int(K) + Int(t + tx)] : 0
            Bs[ty * 16 + tx] = col < N && t + ty < K ? B[Int(t + ty) * Int(N) + Int(col)] : 0
            item.barrier()
            for k: Int32 in 0..<16 {
                acc += As[ty * 16 + k] * Bs[k * 16 + tx]
            }
            item.barrier()
        }
        if row < M && col < N { C[Int(row) * Int(N) + Int(col)] = acc }
    }

    /// Twin of `softmax_rows`: y = softmax(x) along each row, one group per row; the row's maximum and the sum of
    /// its exponentials are tree reductions in shared memory. A group past the last row returns (the whole group:
    /// its condition is the same in every work-item).
    @GPUKernel
    func swiftSoftmaxRows(
        _ item: WorkItem, x: DeviceArray<Float>, y: MutableDeviceArray<Float>, rows: Int32, cols: Int32
    ) {
        let scratch = SharedArray<Float>(count: 256)
        let row = item.groupID(0)
        let lid = item.localID(0)
        let size = item.localSize(0)
        if row >= rows { return }
        let base = Int64(row) * Int64(cols)
        var m = -Float.infinity
        var c0 = lid
        while c0 < cols {
            m = max(m, x[base + Int64(c0)])
            c0 += size
        }
        scratch[lid] = m
        item.barrier()
        var s0 = size / 2
        while s0 > 0 {
            if lid < s0 { scratch[lid] = max(scratch[lid], scratch[lid + s0]) }
            item.barrier()
            s0 >>= 1
        }
        let rowMax = scratch[0]
        item.barrier()
        var sum: Float = 0
        var c1 = lid
        while c1 < cols {
            sum += exp(x[base + Int64(c1)] - rowMax)
            c1 += size
        }
        scratch[lid] = sum
        item.barrier()
        var s1 = size / 2
        while s1 > 0 {
            if lid < s1 { scratch[lid] += scratch[lid + s1] }
            item.barrier()
            s1 >>= 1
        }
        let total = scratch[0]
        var c2 = lid
        while c2 < cols {
            y[base + Int64(c2)] = exp(x[base + Int64(c2)] - rowMax) / total
            c2 += size
        }
    }

    /// Twin of `topk_select`: the k best scores of each query's row, best first, ties to the lower index; one group
    /// per query, k rounds of a tree reduction in shared memory, each removing its winner from `scores`.
    @GPUKernel
    func swiftTopkSelect(
        _ item: WorkItem, scores: MutableDeviceArray<Float>, outIndex: MutableDeviceArray<Int32>,
        outScore: MutableDeviceArray<Float>, queryCount: Int32, rows: Int32, k: Int32
    ) {
        let bestScore = SharedArray<Float>(count: 256)
        let bestIndex = SharedArray<Int32>(count: 256)
        let q = item.groupID(0)
        let lid = item.localID(0)
        let size = item.localSize(0)
        if q >= queryCount { return }
        let base = Int64(q) * Int64(rows)
        for j in 0..<k {
            var bs = -Float.infinity
            var bi: Int32 = -1
            var r = lid
            while r < rows {
                let v = scores[base + Int64(r)]
                if v > bs {
                    bs = v
                    bi = r
                }
                r += size
            }
            bestScore[lid] = bs
            bestIndex[lid] = bi
            item.barrier()
            var step = size / 2
            while step > 0 {
                if lid < step {
                    let os = bestScore[lid + step]
                    let oi = bestIndex[lid + step]
                    let mine = bestIndex[lid]
                    if oi >= 0 && (mine < 0 || os > bestScore[lid] || (os == bestScore[lid] && oi < mine)) {
                        bestScore[lid] = os
                        bestIndex[lid] = oi
                    }
                }
                item.barrier()
                step >>= 1
            }
            if lid == 0 {
                outIndex[q * k + j] = bestIndex[0]
                outScore[q * k + j] = bestScore[0]
                if bestIndex[0] >= 0 { scores[base + Int64(bestIndex[0])] = -Float.infinity }
            }
            item.barrier()
        }
    }

    /// Twin of `histogram`: counts in a group-shared histogram (atomic adds in shared memory), added to `counts`
    /// once per group. The walk is the built-in's `GB_FOR_EACH_ITEM` (`item.contiguousItems`): one contiguous chunk
    /// of ceil(n / global size) values per work-item on CPU devices, grid-stride elsewhere. A `while` loop, not
    /// `stride(from:to:by:)`, whose `Int` step would make the C loop add a 64-bit step and test its sign.
    @GPUKernel
    func swiftHistogram(
        _ item: WorkItem, values: DeviceArray<Float>, counts: MutableDeviceArray<UInt32>, n: Int32, bins: Int32,
        lo: Float, hi: Float
    ) {
        let bucket = SharedArray<UInt32>(count: 256)
        let lid = item.localID(0)
        let size = item.localSize(0)
        var b0 = lid
        while b0 < bins {
            bucket[b0] = 0
            b0 += size
        }
        item.barrier()
        let scale = Float(bins) / (hi - lo)
        let items = item.globalSize(0)
        let chunk = item.contiguousItems ? (n + items - 1) / items : 1
        let start = item.contiguousItems ? item.globalID(0) * chunk : item.globalID(0)
        let end = item.contiguousItems ? min(n, start + chunk) : n
        let step = item.contiguousItems ? 1 : items
        var i = start
        while i < end {
            let v = values[i]
            if v >= lo && v <= hi {
                var b = Int32((v - lo) * scale)
                if b >= bins { b = bins - 1 }
                bucket.atomicAdd(b, 1)
            }
            i += step
        }
        item.barrier()
        var b1 = lid
        while b1 < bins {
            if bucket[b1] != 0 { counts.atomicAdd(b1, bucket[b1]) }
            b1 += size
        }
    }
#endif
