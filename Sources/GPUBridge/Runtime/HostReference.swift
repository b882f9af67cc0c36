import Glibc

/// Deterministic pseudo-random data (SplitMix64) for checks and benchmarks, so a failing check fails the same way
/// every run.
public struct SplitMix64: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A float uniformly in [lo, hi).
    public mutating func float(_ lo: Float = 0, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }

    /// `count` floats uniformly in [lo, hi).
    public mutating func floats(_ count: Int, _ lo: Float = 0, _ hi: Float = 1) -> [Float] {
        (0..<count).map { _ in float(lo, hi) }
    }
}

/// Host references for the built-in kernels, computed in double precision where it matters.
public enum HostReference {
    public static func dot(_ a: [Float], _ b: [Float]) -> Double {
        var s = 0.0
        for i in a.indices { s += Double(a[i]) * Double(b[i]) }
        return s
    }

    public static func matmul(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for p in 0..<k {
                let av = Double(a[i * k + p]); for j in 0..<n { c[i * n + j] += av * Double(b[p * n + j]) }
            }
        }
        return c
    }

    public static func softmax(_ x: [Float], rows: Int, cols: Int) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            let row = x[r * cols..<(r + 1) * cols].map(Double.init)
            let m = row.max() ?? 0
            let e = row.map { exp($0 - m) }
            let s = e.reduce(0, +)
            for c in 0..<cols { y[r * cols + c] = e[c] / s }
        }
        return y
    }

    /// The k best (index, score) per query by cosine similarity, best first, ties to the lower index.
    public static func topK(queries: [Float], matrix: [Float], dim: Int, k: Int) -> [[(index: Int, score: Double)]] {
        let q = queries.count / dim, rows = matrix.count / dim
        return (0..<q).map { qi in
            var scored: [(index: Int, score: Double)] = []
            for r in 0..<rows {
                var dot = 0.0, na = 0.0, nb = 0.0
                for d in 0..<dim {
                    let u = Double(queries[qi * dim + d]), v = Double(matrix[r * dim + d])
                    dot += u * v; na += u * u; nb += v * v
                }
                let denom = na.squareRoot() * nb.squareRoot()
                scored.append((r, denom > 0 ? dot / denom : 0))
            }
            scored.sort { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index }
            return Array(scored.prefix(k))
        }
    }

    /// Counts per bin with the kernels' float binning rule.
    public static func histogram(_ values: [Float], bins: Int, lo: Float, hi: Float) -> [UInt32] {
        var counts = [UInt32](repeating: 0, count: bins)
        let scale = Float(bins) / (hi - lo)
        for v in values where v >= lo && v <= hi { counts[min(bins - 1, Int((v - lo) * scale))] += 1 }
        return counts
    }
}
