import Testing

@testable import GPUBridge

@Suite("CPU top-k selection")
struct TopKSelectTests {
    /// The rule every backend follows, written as the plain k passes: take the best (strictly greater, so the lower
    /// index wins a tie), remove it, repeat; -1 and -infinity when fewer than k scores beat -infinity.
    static func reference(_ scores: [Float], k: Int) -> [(Int32, Float)] {
        var s = scores
        return (0..<k).map { _ in
            var best = -Float.infinity, index = -1
            for r in s.indices where s[r] > best {
                best = s[r]
                index = r
            }
            if index >= 0 { s[index] = -.infinity }
            return (Int32(index), best)
        }
    }

    @Test("one pass gives the k passes' answer: ties to the lower index, NaN and -infinity never chosen")
    func matchesKPasses() async throws {
        let device = try Device(backend: CPUBackend(cores: 3))
        let kernel = try device.compile(KernelCatalog().definition("topk_select").source(for: .cpu))
        var state: UInt64 = 12345
        for (queries, rows, k) in [(3, 50, 10), (2, 1000, 17), (4, 7, 7), (1, 5, 5)] {
            // Few distinct values, so ties are everywhere; some NaN and -infinity.
            let scores: [Float] = (0..<queries * rows).map { i in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                switch (state >> 33) % 10 {
                case 0: return .nan
                case 1: return -.infinity
                default: return Float((state >> 40) % 6) - 2
                }
            }
            let scoreBuffer = try device.makeBuffer(copying: scores)
            let indices = try device.makeBuffer(copying: [Int32](repeating: -7, count: queries * k))
            let best = try device.makeBuffer(copying: [Float](repeating: 99, count: queries * k))
            try await device.launch(
                kernel, Launch(groups: Extent3(queries), groupSize: Extent3(BuiltinKernels.group)),
                arguments: [
                    .buffer(scoreBuffer), .buffer(indices), .buffer(best), .int32(Int32(queries)), .int32(Int32(rows)),
                    .int32(Int32(k)),
                ])
            let gotIndex = try indices.toArray(), gotScore = try best.toArray()
            for q in 0..<queries {
                let want = Self.reference(Array(scores[q * rows..<(q + 1) * rows]), k: k)
                for j in 0..<k {
                    #expect(
                        gotIndex[q * k + j] == want[j].0 && gotScore[q * k + j] == want[j].1,
                        "rows \(rows) k \(k) query \(q) rank \(j): got \(gotIndex[q * k + j]) \(gotScore[q * k + j]), want \(want[j])"
                    )
                }
            }
        }
    }
}
