import GPUBridge

#if SwiftKernels
    extension Suites {
        /// Each Swift twin (`BuiltinSwiftTwins`) against its hand-written built-in on `device`: the same launch on
        /// buffers of the same contents, launched alternately (built-in first on even rounds, twin first on odd ones)
        /// after one warm-up launch each; the figures are the medians of the launch+wait times and the ratio Swift /
        /// hand-written of the medians (above 1: the twin is slower). Both compile through one `KernelCatalog`, so
        /// both get its options (`GB_CONTIGUOUS_ITEMS` on a CPU OpenCL device). Every result is checked against the
        /// host and the twin's against the built-in's.
        ///
        /// Sizes (`--size`, default 4 000 000): elements for vector_add, saxpy, scale, dot_partial, sum_partial and
        /// histogram (256 bins); for cosine_scores 8 queries of dimension 64 against a matrix of size / 64 rows (size
        /// floats); for softmax_rows 64 rows of size / 64; for topk_select (k = 10) 8 queries' rows of size / 8
        /// scores, restored before every launch (the kernel consumes them) outside the timed span. matmul is not
        /// timed: on the CPU backend and on OpenCL the built-in calls a BLAS library (OpenBLAS, CLBlast) where one is
        /// found, which is not the work its text describes.
        func twins(_ device: Device) async throws -> [Figure] {
            let n = size ?? 4_000_000
            let catalog = KernelCatalog()
            for (_, twin) in BuiltinSwiftTwins.all { try catalog.register(twin) }
            var random = SplitMix64(seed: 11)
            var figures: [Figure] = []
            for (id, twin) in BuiltinSwiftTwins.all where id != "matmul" {
                progress.say("twins \(id) on \(device.id)")
                let work = try TwinWork.make(id, n: n, device: device, random: &random)
                let hand = try catalog.kernel(id, on: device)
                let swift = try catalog.kernel(twin.id, on: device)
                var handSamples: [Duration] = [], swiftSamples: [Duration] = []
                let clock = ContinuousClock()
                for round in -1..<repeats {
                    for side in round % 2 == 0 ? [0, 1] : [1, 0] {
                        try work.prepare?()
                        let start = clock.now
                        if side == 0 {
                            try await device.launch(hand, work.launch, arguments: work.handArguments)
                        } else {
                            try await device.launch(swift, work.launch, arguments: work.swiftArguments)
                        }
                        // Round -1 is the warm-up (compilation is done; first touch of the buffers).
                        if round >= 0 {
                            if side == 0 {
                                handSamples.append(clock.now - start)
                            } else {
                                swiftSamples.append(clock.now - start)
                            }
                        }
                    }
                }
                let verified = try work.check(repeats + 1)
                let h = figure(
                    "twins", "\(id) hand-written", device: device, unit: "ms", size: work.size,
                    sizeUnit: work.sizeUnit, samples: handSamples, verified: verified
                ) { $0 * 1e3 }
                let s = figure(
                    "twins", "\(id) Swift twin", device: device, unit: "ms", size: work.size,
                    sizeUnit: work.sizeUnit, samples: swiftSamples, verified: verified, note: work.note
                ) { $0 * 1e3 }
                figures += [h, s, ratio(s, over: h, name: "\(id) Swift / hand-written")]
            }
            return figures
        }
    }

    /// One kernel's benchmark: its launch, the built-in's and the twin's arguments (separate output buffers with the
    /// same starting contents) and the check of both results after a number of launches each.
    private struct TwinWork {
        var launch: Launch
        var handArguments: [KernelArgument]
        var swiftArguments: [KernelArgument]
        var size: Int
        var sizeUnit = "elements"
        var note: String?
        /// Run before every launch of either side, outside the timed span (restores an input a kernel consumes).
        var prepare: (() throws -> Void)? = nil
        /// True when both sides' results after `runs` launches each are what the host computes.
        var check: (_ runs: Int) throws -> Bool

        static func make(_ id: String, n: Int, device: Device, random: inout SplitMix64) throws -> TwinWork {
            switch id {
            case "vector_add":
                let a = random.floats(n, -1, 1), b = random.floats(n, -1, 1)
                let ab = try device.makeBuffer(copying: a), bb = try device.makeBuffer(copying: b)
                let nan = [Float](repeating: .nan, count: n)
                let ch = try device.makeBuffer(copying: nan), cs = try device.makeBuffer(copying: nan)
                return TwinWork(
                    launch: .covering(n), handArguments: [.buffer(ab), .buffer(bb), .buffer(ch), .int32(Int32(n))],
                    swiftArguments: [.buffer(ab), .buffer(bb), .buffer(cs), .int32(Int32(n))], size: n
                ) { _ in
                    let hand = try ch.toArray(), swift = try cs.toArray()
                    return hand == swift && (0..<n).allSatisfy { hand[$0] == a[$0] + b[$0] }
                }
            case "saxpy", "scale":
                let alpha: Float = id == "saxpy" ? 1.5 : -0.25
                let x = random.floats(n, -1, 1), y0 = random.floats(n, -1, 1)
                let xb = try device.makeBuffer(copying: x)
                let yh = try device.makeBuffer(copying: y0), ys = try device.makeBuffer(copying: y0)
                return TwinWork(
                    launch: .covering(n), handArguments: [.buffer(xb), .buffer(yh), .float(alpha), .int32(Int32(n))],
                    swiftArguments: [.buffer(xb), .buffer(ys), .float(alpha), .int32(Int32(n))], size: n
                ) { runs in
                    let hand = try yh.toArray(), swift = try ys.toArray()
                    guard hand == swift else { return false }
                    if id == "scale" { return (0..<n).allSatisfy { hand[$0] == alpha * x[$0] } }
                    // saxpy accumulates: y = alpha * x + y, `runs` times (a device may fuse the multiply-add).
                    return (0..<n).allSatisfy { i in
                        var y = y0[i]
                        for _ in 0..<runs { y = alpha * x[i] + y }
                        return abs(hand[i] - y) <= 1e-5 + 1e-5 * abs(y)
                    }
                }
            case "cosine_scores":
                let queryCount = 8, dim = 64, rows = max(1, n / dim)
                let queries = random.floats(queryCount * dim, -1, 1), matrix = random.floats(rows * dim, -1, 1)
                let qb = try device.makeBuffer(copying: queries), mb = try device.makeBuffer(copying: matrix)
                let nan = [Float](repeating: .nan, count: queryCount * rows)
                let sh = try device.makeBuffer(copying: nan), ss = try device.makeBuffer(copying: nan)
                let scalars: [KernelArgument] = [.int32(Int32(queryCount)), .int32(Int32(rows)), .int32(Int32(dim))]
                return TwinWork(
                    launch: Launch(groups: Extent3((rows + 255) / 256, queryCount), groupSize: Extent3(256, 1)),
                    handArguments: [.buffer(qb), .buffer(mb), .buffer(sh)] + scalars,
                    swiftArguments: [.buffer(qb), .buffer(mb), .buffer(ss)] + scalars, size: rows,
                    sizeUnit: "rows (8 queries x 64 dims)"
                ) { _ in
                    let hand = try sh.toArray(), swift = try ss.toArray()
                    return (0..<queryCount).allSatisfy { q in
                        (0..<rows).allSatisfy { r in
                            var dot = 0.0, na = 0.0, nb = 0.0
                            for d in 0..<dim {
                                let u = Double(queries[q * dim + d]), v = Double(matrix[r * dim + d])
                                dot += u * v
                                na += u * u
                                nb += v * v
                            }
                            let want = dot / (na.squareRoot() * nb.squareRoot())
                            let h = Double(hand[q * rows + r]), s = Double(swift[q * rows + r])
                            return abs(h - want) <= 1e-5 && abs(s - h) <= 1e-5 + 1e-5 * abs(h)
                        }
                    }
                }
            case "dot_partial", "sum_partial":
                // The operation's launch (Operations.dot and .sum): groups of 256, at most reductionGroupLimit.
                let groups = max(1, min(Operations.reductionGroupLimit(device), (n + 255) / 256))
                let x = random.floats(n, -1, 1), y = random.floats(n, -1, 1)
                let xb = try device.makeBuffer(copying: x), yb = try device.makeBuffer(copying: y)
                let nan = [Float](repeating: .nan, count: groups)
                let ph = try device.makeBuffer(copying: nan), ps = try device.makeBuffer(copying: nan)
                let dot = id == "dot_partial"
                let inputs: [KernelArgument] = dot ? [.buffer(xb), .buffer(yb)] : [.buffer(xb)]
                let want = dot ? HostReference.dot(x, y) : x.reduce(0.0) { $0 + Double($1) }
                return TwinWork(
                    launch: Launch(groups: Extent3(groups), groupSize: Extent3(256)),
                    handArguments: inputs + [.buffer(ph), .int32(Int32(n))],
                    swiftArguments: inputs + [.buffer(ps), .int32(Int32(n))], size: n
                ) { _ in
                    // The partials depend on how each side deals elements to groups; their totals do not.
                    let totals = try [ph, ps].map { try $0.toArray().reduce(0.0) { $0 + Double($1) } }
                    return totals.allSatisfy { abs($0 - want) <= 1e-4 * Double(n).squareRoot() + 1e-4 * abs(want) }
                }
            case "softmax_rows":
                let rows = 64, cols = max(1, n / 64)
                let x = random.floats(rows * cols, -5, 5)
                let xb = try device.makeBuffer(copying: x)
                let nan = [Float](repeating: .nan, count: rows * cols)
                let yh = try device.makeBuffer(copying: nan), ys = try device.makeBuffer(copying: nan)
                let scalars: [KernelArgument] = [.int32(Int32(rows)), .int32(Int32(cols))]
                return TwinWork(
                    launch: Launch(groups: Extent3(rows), groupSize: Extent3(256)),
                    handArguments: [.buffer(xb), .buffer(yh)] + scalars,
                    swiftArguments: [.buffer(xb), .buffer(ys)] + scalars, size: cols, sizeUnit: "columns (64 rows)"
                ) { _ in
                    let want = HostReference.softmax(x, rows: rows, cols: cols)
                    return try [yh, ys].allSatisfy { buffer in
                        let got = try buffer.toArray()
                        return (0..<got.count).allSatisfy { abs(Double(got[$0]) - want[$0]) <= 1e-5 }
                    }
                }
            case "topk_select":
                let queryCount = 8, rows = max(10, n / 8), k = 10
                let scores = random.floats(queryCount * rows, -1, 1)
                let sh = try device.makeBuffer(copying: scores), ss = try device.makeBuffer(copying: scores)
                let ih = try device.makeBuffer(copying: [Int32](repeating: -2, count: queryCount * k))
                let iz = try device.makeBuffer(copying: [Int32](repeating: -2, count: queryCount * k))
                let oh = try device.makeBuffer(copying: [Float](repeating: .nan, count: queryCount * k))
                let os = try device.makeBuffer(copying: [Float](repeating: .nan, count: queryCount * k))
                let scalars: [KernelArgument] = [.int32(Int32(queryCount)), .int32(Int32(rows)), .int32(Int32(k))]
                return TwinWork(
                    launch: Launch(groups: Extent3(queryCount), groupSize: Extent3(256)),
                    handArguments: [.buffer(sh), .buffer(ih), .buffer(oh)] + scalars,
                    swiftArguments: [.buffer(ss), .buffer(iz), .buffer(os)] + scalars, size: rows,
                    sizeUnit: "rows (8 queries, k = 10)",
                    prepare: {
                        try sh.copy(from: scores)
                        try ss.copy(from: scores)
                    }
                ) { _ in
                    // The k best of each query's row, best first, ties to the lower index.
                    var wantIndex: [Int32] = [], wantScore: [Float] = []
                    for q in 0..<queryCount {
                        let row = Array(scores[(q * rows)..<((q + 1) * rows)])
                        let order = row.indices.sorted { a, b in row[a] > row[b] || (row[a] == row[b] && a < b) }
                        for r in order.prefix(k) {
                            wantIndex.append(Int32(r))
                            wantScore.append(row[r])
                        }
                    }
                    return try ih.toArray() == wantIndex && iz.toArray() == wantIndex && oh.toArray() == wantScore
                        && os.toArray() == wantScore
                }
            default:  // histogram
                let bins = 256
                let values = random.floats(n, -1.25, 1.25)
                let vb = try device.makeBuffer(copying: values)
                let zero = [UInt32](repeating: 0, count: bins)
                let ch = try device.makeBuffer(copying: zero), cs = try device.makeBuffer(copying: zero)
                // The operation's launch (Operations.histogram): one group of 256 per 256 values, at most
                // Operations.reductionGroupLimit.
                let groups = max(
                    1, min(Operations.reductionGroupLimit(device), (n + 255) / 256, device.info.maxGroups.first ?? 1))
                let scalars: [KernelArgument] = [.int32(Int32(n)), .int32(Int32(bins)), .float(-1), .float(1)]
                return TwinWork(
                    launch: Launch(groups: Extent3(groups), groupSize: Extent3(256)),
                    handArguments: [.buffer(vb), .buffer(ch)] + scalars,
                    swiftArguments: [.buffer(vb), .buffer(cs)] + scalars, size: n
                ) { runs in
                    let want = HostReference.histogram(values, bins: bins, lo: -1, hi: 1).map { $0 * UInt32(runs) }
                    return try ch.toArray() == want && cs.toArray() == want
                }
            }
        }
    }
#else
    extension Suites {
        /// Without the SwiftKernels trait there are no Swift twins to time.
        func twins(_ device: Device) async throws -> [Figure] { [] }
    }
#endif
