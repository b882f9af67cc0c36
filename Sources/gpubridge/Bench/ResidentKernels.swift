import GPUBridge

extension Suites {
    /// Sum, softmax, cosine top-k and matmul 512 on inputs already in device memory: the kernels' own work (with the
    /// small results read back; softmax and matmul leave their output on the device), the figure to hold against numpy
    /// working on arrays in memory. The same sizes and inputs as the end-to-end figures; every result is checked
    /// against the host.
    func residentKernels(_ device: Device) async throws -> [Figure] {
        var figures: [Figure] = []
        let catalog = KernelCatalog()
        var values = SplitMix64(seed: 7)
        let n = size ?? 4_000_000
        let note = "inputs already in device memory: the kernels and the small results read back"
        // The built-in reductions' and softmax's work-group size.
        let group = 256

        for s in [n / 16, n] {
            progress.say("kernel sum size \(s), resident, on \(device.id)")
            let x = values.floats(s, -1, 1)
            let input = try device.makeBuffer(copying: x)
            let groups = min(Operations.reductionGroupLimit(device), (s + group - 1) / group)
            let partial = try device.makeBuffer(of: Float.self, count: groups)
            let kernel = try catalog.kernel("sum_partial", on: device)
            var total = Double.nan
            let samples = try await sample(repeats: repeats) {
                try await device.launch(
                    kernel, Launch(groups: Extent3(groups), groupSize: Extent3(group)),
                    arguments: [.buffer(input), .buffer(partial), .int32(Int32(s))])
                total = try partial.toArray().reduce(0.0) { $0 + Double($1) }
            }
            let want = x.reduce(0.0) { $0 + Double($1) }
            figures.append(
                figure(
                    "kernels", "sum size \(s), resident", device: device, unit: "GB/s", size: s, sizeUnit: "size",
                    samples: samples, verified: abs(total - want) <= 1e-4 * max(1, abs(want)),
                    note: note + " (\(groups) partial sums)"
                ) { 4 * Double(s) / $0 / 1e9 })
        }

        let rows = 64
        for cols in [1024, 16384] {
            progress.say("kernel softmax size \(cols), resident, on \(device.id)")
            let x = values.floats(rows * cols, -5, 5)
            let input = try device.makeBuffer(copying: x)
            let output = try device.makeBuffer(copying: [Float](repeating: .nan, count: x.count))
            let kernel = try catalog.kernel("softmax_rows", on: device)
            let samples = try await sample(repeats: repeats) {
                try await device.launch(
                    kernel, Launch(groups: Extent3(rows), groupSize: Extent3(group)),
                    arguments: [.buffer(input), .buffer(output), .int32(Int32(rows)), .int32(Int32(cols))])
            }
            let got = try output.toArray(), want = HostReference.softmax(x, rows: rows, cols: cols)
            figures.append(
                figure(
                    "kernels", "softmax size \(cols), resident", device: device, unit: "GB/s", size: cols,
                    sizeUnit: "size", samples: samples,
                    verified: (0..<x.count).allSatisfy { abs(Double(got[$0]) - want[$0]) <= 1e-5 }, note: note
                ) { 8 * Double(rows * cols) / $0 / 1e9 })
        }

        let dim = 64, queryCount = 8, k = 10
        for matrixRows in [10_000, 100_000] {
            progress.say("kernel topk size \(matrixRows), resident, on \(device.id)")
            let matrix = values.floats(matrixRows * dim, -1, 1), queries = values.floats(queryCount * dim, -1, 1)
            let matrixBuffer = try device.makeBuffer(copying: matrix)
            let queryBuffer = try device.makeBuffer(copying: queries)
            let context = ExecutionContext(device: device, catalog: catalog)
            var got: [[Operations.Match]] = []
            let samples = try await sample(repeats: repeats) {
                got = try await Operations.cosineTopK(
                    queries: queryBuffer, queryCount: queryCount, matrix: matrixBuffer, rows: matrixRows, dim: dim,
                    k: k, context: context)
            }
            let want = HostReference.topK(queries: queries, matrix: matrix, dim: dim, k: k)
            let ok =
                got.count == queryCount
                && (0..<queryCount).allSatisfy { q in
                    (0..<k).allSatisfy { abs(Double(got[q][$0].score) - want[q][$0].score) <= 1e-4 }
                }
            figures.append(
                figure(
                    "kernels", "topk size \(matrixRows), resident", device: device, unit: "GFLOP/s",
                    size: matrixRows, sizeUnit: "size", samples: samples, verified: ok,
                    note: note + " (8 queries x 64 dims, k = 10)"
                ) { 6 * Double(queryCount * dim * matrixRows) / $0 / 1e9 })
        }

        // matmul 512: A and B already on the device, C left there (numpy's `a @ b` reads its operands in memory and
        // writes a new array); C is read back once, after the samples, and checked against the host product.
        let side = 512
        progress.say("kernel matmul size \(side), resident, on \(device.id)")
        let a = values.floats(side * side, -1, 1), b = values.floats(side * side, -1, 1)
        let aBuffer = try device.makeBuffer(copying: a), bBuffer = try device.makeBuffer(copying: b)
        let cBuffer = try device.makeBuffer(copying: [Float](repeating: .nan, count: side * side))
        let matmul = try catalog.kernel("matmul", on: device)
        // The built-in matmul's launch: one group of 16 x 16 work-items per 16 x 16 tile of C (a shape that did not
        // cover C would fail the check below).
        let tiles = (side + 15) / 16
        let matmulSamples = try await sample(repeats: repeats) {
            try await device.launch(
                matmul, Launch(groups: Extent3(tiles, tiles), groupSize: Extent3(16, 16)),
                arguments: [
                    .buffer(aBuffer), .buffer(bBuffer), .buffer(cBuffer), .int32(Int32(side)), .int32(Int32(side)),
                    .int32(Int32(side)),
                ])
        }
        let product = try cBuffer.toArray(), wanted = HostReference.matmul(a, b, m: side, n: side, k: side)
        figures.append(
            figure(
                "kernels", "matmul size \(side), resident", device: device, unit: "GFLOP/s", size: side,
                sizeUnit: "size", samples: matmulSamples,
                verified: (0..<product.count).allSatisfy {
                    abs(Double(product[$0]) - wanted[$0]) <= 1e-3 * (1 + abs(wanted[$0]))
                },
                note: "inputs already in device memory, the product left there"
            ) { 2 * Double(side * side * side) / $0 / 1e9 })
        return figures
    }
}
