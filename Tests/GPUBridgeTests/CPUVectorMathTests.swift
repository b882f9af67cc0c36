import Glibc
import GPUBridgeTestSupport
import Testing

@testable import GPUBridge

/// The distance between two floats in units in the last place (0 when both are NaN or equal infinities).
private func ulps(_ a: Float, _ b: Float) -> Int {
    if a.isNaN && b.isNaN { return 0 }
    if a == b { return 0 }
    if a.isNaN || b.isNaN || a.isInfinite || b.isInfinite { return Int.max }
    func ordered(_ x: Float) -> Int {
        let bits = Int(Int32(bitPattern: x.bitPattern))
        return bits < 0 ? Int(Int32.min) - bits : bits
    }
    return abs(ordered(a) - ordered(b))
}

/// Deterministic floats in [lo, hi).
private func floats(_ count: Int, _ lo: Float, _ hi: Float, seed: UInt64) -> [Float] {
    var state = seed | 1
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return lo + (hi - lo) * Float(state >> 40) / Float(1 << 24)
    }
}

@Suite("CPU vector math: exp, sums, dot products, maxima")
struct CPUVectorMathTests {
    /// e^x by the Swift reference (`exp`) or by the C loop the softmax runs (`exponentials` with no shift).
    enum ExpPath: String, CaseIterable, Sendable { case swift, vectorLoop }

    static func exp16(_ values: [Float], _ path: ExpPath = .swift) -> [Float] {
        switch path {
        case .swift:
            return values.map { CPUVectorMath.exp($0) }
        case .vectorLoop:
            var out = [Float](repeating: 12_345, count: values.count)
            values.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { y in
                    _ = CPUVectorMath.exponentials(x.baseAddress!, y.baseAddress!, count: values.count, shift: 0)
                }
            }
            return out
        }
    }

    @Test(
        "exp is within 2 ulp of expf over the normal range, every 1/64 step and at the edges",
        arguments: ExpPath.allCases)
    func expAccuracy(path: ExpPath) {
        let sweep = stride(from: Float(-87.3), through: 88.72, by: 1.0 / 64).map { $0 }
        let edges: [Float] = [
            0, -0.0, 1, -1, 1e-30, -1e-30, 88.72, 88.5, 88.376, 88.377, -87.33, -87.3, 0.693_147_2, -0.693_147_2,
        ]
        let inputs = sweep + edges
        let got = Self.exp16(inputs, path)
        var worst = (ulps: 0, x: Float(0))
        for (i, x) in inputs.enumerated() {
            let u = ulps(got[i], expf(x))
            if u > worst.ulps { worst = (u, x) }
        }
        #expect(worst.ulps <= 2, "worst: \(worst.ulps) ulp at x = \(worst.x)")
    }

    @Test("exp outside the range: 0 below, infinity above, NaN for NaN", arguments: ExpPath.allCases)
    func expEdges(path: ExpPath) {
        let got = Self.exp16([-87.4, -100, -.infinity, 88.73, 1000, .infinity, .nan], path)
        #expect(got[0] == 0 && got[1] == 0 && got[2] == 0)
        #expect(got[3] == .infinity && got[4] == .infinity && got[5] == .infinity)
        #expect(got[6].isNaN)
    }

    @Test("sum and dot match a double-precision loop for lengths that leave every tail, and sub-ranges")
    func sumAndDot() {
        for count in [0, 1, 15, 16, 31, 32, 33, 4095, 4096, 4097, 10_000 + 7] {
            let x = floats(count, -1, 1, seed: UInt64(count) + 1), y = floats(count, -2, 2, seed: UInt64(count) + 99)
            let lower = count / 3
            let wantSum = x[lower...].reduce(0.0) { $0 + Double($1) }
            let wantDot = zip(x[lower...], y[lower...]).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let bound = Double(count) * 1e-6 + 1e-6
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeBufferPointer { yp in
                    let sum = CPUVectorMath.sum(xp.baseAddress ?? UnsafePointer(bitPattern: 64)!, lower..<count)
                    let dot = CPUVectorMath.dot(
                        xp.baseAddress ?? UnsafePointer(bitPattern: 64)!,
                        yp.baseAddress ?? UnsafePointer(bitPattern: 64)!,
                        lower..<count)
                    #expect(abs(sum - wantSum) <= bound, "count \(count): sum \(sum) want \(wantSum)")
                    #expect(abs(dot - wantDot) <= 2 * bound, "count \(count): dot \(dot) want \(wantDot)")
                }
            }
        }
    }

    @Test("maximum finds the largest element in any lane or the tail, and skips NaN")
    func maximum() {
        for count in [1, 15, 16, 17, 100] {
            for position in Set([0, count / 2, count - 1]) {
                var x = [Float](repeating: -3, count: count)
                x[position] = 7
                if count > 2 { x[(position + 1) % count] = .nan }
                let m = x.withUnsafeBufferPointer { CPUVectorMath.maximum($0.baseAddress!, count: count) }
                #expect(m == 7, "count \(count) position \(position): \(m)")
            }
        }
    }

    @Test("softmax rows through exponentials and scale sum to 1 and match the double reference")
    func softmaxRows() {
        for cols in [1, 7, 16, 100, 1000] {
            let x = floats(cols, -20, 20, seed: UInt64(cols))
            var y = [Float](repeating: .nan, count: cols)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    let m = CPUVectorMath.maximum(xp.baseAddress!, count: cols)
                    let sum = CPUVectorMath.exponentials(xp.baseAddress!, yp.baseAddress!, count: cols, shift: m)
                    CPUVectorMath.scale(yp.baseAddress!, count: cols, by: 1 / sum)
                }
            }
            let want = HostReference.softmax(x, rows: 1, cols: cols)
            let worst = (0..<cols).map { abs(Double(y[$0]) - want[$0]) }.max() ?? 0
            #expect(worst <= 1e-6, "cols \(cols): worst difference \(worst)")
        }
    }

    @Test(
        "a softmax row in one call, in place or not, over lengths that leave every tail, matches the double reference")
    func softmaxRowInOneCall() {
        for cols in [1, 15, 16, 17, 1000, 4097, 20_000] {
            let x = floats(cols, -30, 30, seed: UInt64(cols) + 7)
            let want = HostReference.softmax(x, rows: 1, cols: cols)
            var y = [Float](repeating: .nan, count: cols)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer {
                    CPUVectorMath.softmaxRow(xp.baseAddress!, $0.baseAddress!, count: cols)
                }
            }
            var inPlace = x
            inPlace.withUnsafeMutableBufferPointer {
                CPUVectorMath.softmaxRow($0.baseAddress!, $0.baseAddress!, count: cols)
            }
            let worst = (0..<cols).map { abs(Double(y[$0]) - want[$0]) }.max() ?? 0
            #expect(worst <= 1e-6, "cols \(cols): worst difference \(worst)")
            #expect(inPlace == y, "cols \(cols): in place differs")
        }
        #expect(["avx512f", "avx2+fma", "baseline"].contains(CPUVectorMath.variant))
        let line = CPUBackendProvider().discover().details.first { $0.0 == "vector loops" }?.1
        #expect(line?.hasPrefix(CPUVectorMath.variant + " ") == true, "\(line ?? "no vector loops line")")
    }

    @Test("the cosine loops: row norms and cosines match a double reference, with zero rows scoring 0, at every dim")
    func cosineRows() {
        for dim in [1, 15, 16, 17, 64, 100] {
            let count = 37
            var rows = floats(count * dim, -1, 1, seed: UInt64(dim) + 5)
            for j in 0..<dim { rows[3 * dim + j] = 0 }  // a zero row: no direction, score 0
            let query = floats(dim, -1, 1, seed: UInt64(dim) + 77)
            var norms = [Float](repeating: -1, count: count), out = [Float](repeating: .nan, count: count)
            rows.withUnsafeBufferPointer { rp in
                query.withUnsafeBufferPointer { qp in
                    norms.withUnsafeMutableBufferPointer { np in
                        CPUVectorMath.rowNorms(rp.baseAddress!, count: count, dim: dim, into: np.baseAddress!)
                        let queryNorm = CPUVectorMath.shortDot(qp.baseAddress!, qp.baseAddress!, count: dim)
                            .squareRoot()
                        out.withUnsafeMutableBufferPointer { op in
                            CPUVectorMath.cosineRows(
                                query: qp.baseAddress!, norm: queryNorm, rows: rp.baseAddress!,
                                rowNorms: UnsafePointer(np.baseAddress!), count: count, dim: dim, into: op.baseAddress!)
                        }
                    }
                }
            }
            let queryNorm = query.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            for r in 0..<count {
                let row = rows[(r * dim)..<(r * dim + dim)]
                let norm = row.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                let dot = zip(row, query).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let want = norm > 0 ? dot / (norm * queryNorm) : 0
                #expect(abs(Double(norms[r]) - norm) <= 1e-5 * (1 + norm), "dim \(dim) row \(r): norm \(norms[r])")
                #expect(abs(Double(out[r]) - want) <= 1e-5, "dim \(dim) row \(r): cosine \(out[r]) want \(want)")
            }
            #expect(out[3] == 0)
        }
    }

    @Test("cosine_scores refuses buffers smaller than its sizes instead of reading or writing past them")
    func cosineScoresShortBuffers() async throws {
        let device = try Device(backend: CPUBackend())
        let kernel = try device.compile(KernelCatalog().definition("cosine_scores").source(for: .cpu))
        let queryCount = 2, rows = 300, dim = 8
        for (short, name) in [(0, "queries"), (1, "matrix"), (2, "scores")] {
            let counts = [queryCount * dim, rows * dim, queryCount * rows]
            let buffers = try (0..<3).map { i in
                try device.makeBuffer(copying: [Float](repeating: 1, count: counts[i] - (i == short ? 1 : 0)))
            }
            let error = await bridgeError {
                try await device.launch(
                    kernel, Launch(groups: Extent3(2, queryCount), groupSize: Extent3(256)),
                    arguments: buffers.map { .buffer($0) } + [
                        .int32(Int32(queryCount)), .int32(Int32(rows)), .int32(Int32(dim)),
                    ])
            }
            #expect(
                error?.description.contains("('\(name)') holds \(counts[short] - 1) elements") == true,
                "\(name): \(String(describing: error))")
        }
        let buffers = try [2 * 8, 300 * 8, 2 * 300].map { try device.makeBuffer(of: Float.self, count: $0) }
        let negative = await bridgeError {
            try await device.launch(
                kernel, Launch(groups: Extent3(2, 2), groupSize: Extent3(256)),
                arguments: buffers.map { .buffer($0) } + [.int32(2), .int32(300), .int32(-1)])
        }
        #expect(
            negative?.description.contains("argument 5 ('dim') is -1: a count that sizes 'queries' must be at least 0")
                == true,
            "\(String(describing: negative))")
    }

    @Test("firstAbove finds the first element strictly above the threshold in any lane or the tail, never a NaN")
    func firstAbove() {
        for count in [0, 1, 15, 16, 17, 33, 100] {
            var x = [Float](repeating: 0.5, count: count)
            for i in stride(from: 0, to: count, by: 3) { x[i] = .nan }
            #expect(
                x.withUnsafeBufferPointer { CPUVectorMath.firstAbove($0.baseAddress!, count: count, threshold: 0.5) }
                    == count, "count \(count): nothing is strictly above 0.5")
            for position in Set([0, count / 2, count - 1]) where count > 0 {
                var y = x
                y[position] = 0.75
                if position + 1 < count { y[position + 1] = 2 }
                let found = y.withUnsafeBufferPointer {
                    CPUVectorMath.firstAbove($0.baseAddress!, count: count, threshold: 0.5)
                }
                #expect(found == position, "count \(count): 0.75 at \(position), found \(found)")
            }
        }
    }

    @Test("topk_select refuses k below 1 and buffers smaller than its sizes instead of trapping or overrunning them")
    func topKSelectBadArguments() async throws {
        let device = try Device(backend: CPUBackend())
        let kernel = try device.compile(KernelCatalog().definition("topk_select").source(for: .cpu))
        let queryCount = 2, rows = 100, k = 5
        func launch(scores: Int, indices: Int, best: Int, k: Int) async -> GPUBridgeError? {
            await bridgeError {
                let s = try device.makeBuffer(copying: [Float](repeating: 1, count: scores))
                let i = try device.makeBuffer(copying: [Int32](repeating: 0, count: indices))
                let b = try device.makeBuffer(copying: [Float](repeating: 0, count: best))
                try await device.launch(
                    kernel, Launch(groups: Extent3(queryCount), groupSize: Extent3(256)),
                    arguments: [
                        .buffer(s), .buffer(i), .buffer(b), .int32(Int32(queryCount)), .int32(Int32(rows)),
                        .int32(Int32(k)),
                    ])
            }
        }
        let zero = await launch(scores: queryCount * rows, indices: 1, best: 1, k: 0)
        #expect(
            zero?.description.contains("'argument 5 ('k') of 'topk_select'': value 0 is outside 1...") == true,
            "\(String(describing: zero))")
        let short = await launch(scores: queryCount * rows - 1, indices: queryCount * k, best: queryCount * k, k: k)
        #expect(short?.description.contains("('scores') holds \(queryCount * rows - 1) elements") == true)
        let few = await launch(scores: queryCount * rows, indices: queryCount * k, best: queryCount * k - 1, k: k)
        #expect(few?.description.contains("('outScore') holds \(queryCount * k - 1) elements") == true)
    }

    @Test("topk_select over no rows answers every query with k entries of (-1, -infinity)")
    func topKSelectNoRows() async throws {
        let device = try Device(backend: CPUBackend())
        let kernel = try device.compile(KernelCatalog().definition("topk_select").source(for: .cpu))
        let queryCount = 3, k = 2
        let scores = try device.makeBuffer(copying: [Float](repeating: 9, count: 1))
        let indices = try device.makeBuffer(copying: [Int32](repeating: 77, count: queryCount * k))
        let best = try device.makeBuffer(copying: [Float](repeating: 77, count: queryCount * k))
        try await device.launch(
            kernel, Launch(groups: Extent3(queryCount), groupSize: Extent3(256)),
            arguments: [
                .buffer(scores), .buffer(indices), .buffer(best), .int32(Int32(queryCount)), .int32(0),
                .int32(Int32(k)),
            ])
        #expect(try indices.toArray() == [Int32](repeating: -1, count: queryCount * k))
        #expect(try best.toArray() == [Float](repeating: -.infinity, count: queryCount * k))
    }

    @Test(
        "a direct histogram launch with bins outside 1...256 is refused instead of trapping", arguments: [0, -3, 257])
    func histogramBins(bins: Int32) async throws {
        let device = try Device(backend: CPUBackend())
        let kernel = try device.compile(KernelCatalog().definition("histogram").source(for: .cpu))
        let values = try device.makeBuffer(copying: [Float](repeating: 0.5, count: 1000))
        let counts = try device.makeBuffer(copying: [UInt32](repeating: 7, count: 300))
        let error = await bridgeError {
            try await device.launch(
                kernel, Launch(groups: Extent3(4), groupSize: Extent3(256)),
                arguments: [.buffer(values), .buffer(counts), .int32(1000), .int32(bins), .float(0), .float(1)])
        }
        #expect(
            error?.description.contains("'argument 3 ('bins') of 'histogram'': value \(bins) is outside 1...256")
                == true,
            "\(String(describing: error))")
        #expect(try counts.toArray().allSatisfy { $0 == 7 })
    }

    @Test("the CPU bodies check their own sizes too, when run under a source that declares no parameters")
    func bodiesWithoutDeclaredParameters() async throws {
        let device = try Device(backend: CPUBackend())
        let catalog = KernelCatalog()
        /// The built-in's CPU body under a source with no parameters or limits: nothing is checked before launch.
        func bare(_ id: String) throws -> Kernel {
            let swift = try #require(try catalog.definition(id).swift)
            return try device.compile(KernelSource(name: id, scheduling: swift.scheduling, swift: swift.body))
        }
        func floats(_ count: Int) throws -> KernelArgument {
            .buffer(try device.makeBuffer(copying: [Float](repeating: 1, count: count)).raw)
        }
        let cosine = await bridgeError {
            try await device.launch(
                try bare("cosine_scores"), Launch(groups: Extent3(2, 2), groupSize: Extent3(256)),
                arguments: [
                    try floats(2 * 8), try floats(300 * 8 - 1), try floats(2 * 300), .int32(2), .int32(300), .int32(8),
                ])
        }
        #expect(
            cosine?.description.contains("matrix holds 2399 floats, queryCount, rows, dim = 2, 300, 8 need 2400")
                == true,
            "\(String(describing: cosine))")
        let topk = await bridgeError {
            try await device.launch(
                try bare("topk_select"), Launch(groups: Extent3(2), groupSize: Extent3(256)),
                arguments: [
                    try floats(2 * 100), try floats(2 * 5), try floats(2 * 5 - 1), .int32(2), .int32(100), .int32(5),
                ])
        }
        #expect(
            topk?.description.contains("outScore holds 9 elements, queryCount, rows, k = 2, 100, 5 need 10") == true,
            "\(String(describing: topk))")
        let histogram = await bridgeError {
            try await device.launch(
                try bare("histogram"), Launch(groups: Extent3(1), groupSize: Extent3(256)),
                arguments: [try floats(100), try floats(300), .int32(100), .int32(0), .float(0), .float(1)])
        }
        #expect(
            histogram?.description.contains("bins = 0: must be 1...256") == true, "\(String(describing: histogram))")
    }
}
