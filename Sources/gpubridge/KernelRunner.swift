import GPUBridge

/// Runs one built-in operation on one device with generated inputs, and checks it against the host reference.
enum KernelRunner {
    static let names = ["vector-add", "saxpy", "scale", "dot", "sum", "matmul", "softmax", "topk", "histogram"]

    struct Outcome {
        var summary: String
        /// The first run's time (the one checked).
        var duration: Duration
        /// The times of the repeats after the first run, on the same inputs and catalog (empty when none were asked).
        var repeats: [Duration] = []
        /// nil when not verified; otherwise whether the result matched the host reference.
        var verified: Bool?
        var detail: String
    }

    /// `size` means: elements (vector kernels, reductions, histogram), the side of square matrices (matmul),
    /// columns of 64 rows (softmax), rows of a 64-wide matrix searched by 8 queries for k = 10 (topk). After the first
    /// run (verified when `verify` is set), the operation runs `repeats` more times on the same inputs, as a user
    /// calling it in a loop would, and `Outcome.repeats` holds their times.
    static func run(_ name: String, size: Int, on device: Device, verify: Bool, repeats: Int = 0) async throws
        -> Outcome
    {
        var samples: [Duration] = []
        var outcome = try await run(name, size: size, on: device, verify: verify, repeats: repeats, samples: &samples)
        outcome.repeats = samples
        return outcome
    }

    private static func run(
        _ name: String, size: Int, on device: Device, verify: Bool, repeats: Int, samples: inout [Duration]
    ) async throws -> Outcome {
        let catalog = KernelCatalog()
        var values = SplitMix64(seed: 7)
        let clock = ContinuousClock()
        func time<T>(_ body: () async throws -> T) async throws -> (T, Duration) {
            var start = clock.now
            let result = try await body()
            let first = clock.now - start
            for _ in 0..<repeats {
                start = clock.now
                _ = try await body()
                samples.append(clock.now - start)
            }
            return (result, first)
        }
        func relative(_ got: Double, _ want: Double) -> Bool { abs(got - want) <= 1e-4 * max(1, abs(want)) }
        switch name {
        case "saxpy":
            let x = values.floats(size, -1, 1), y = values.floats(size, -1, 1)
            let (out, d) = try await time {
                try await Operations.saxpy.run((alpha: 2, x: x, y: y), on: device, catalog: catalog)
            }
            let ok =
                verify ? (0..<size).allSatisfy { abs(out[$0] - (2 * x[$0] + y[$0])) <= 1e-6 * (1 + abs(out[$0])) } : nil
            return Outcome(
                summary: "y = 2x + y over \(size) floats", duration: d, verified: ok, detail: "y[0] = \(out[0])")
        case "scale":
            let x = values.floats(size, -1, 1)
            let (out, d) = try await time {
                try await Operations.scale.run((alpha: 0.5, x: x), on: device, catalog: catalog)
            }
            let ok = verify ? (0..<size).allSatisfy { out[$0] == 0.5 * x[$0] } : nil
            return Outcome(
                summary: "y = 0.5x over \(size) floats", duration: d, verified: ok, detail: "y[0] = \(out[0])")
        case "dot":
            let a = values.floats(size, -1, 1), b = values.floats(size, -1, 1)
            let (out, d) = try await time { try await Operations.dot.run(.init(a, b), on: device, catalog: catalog) }
            let want = HostReference.dot(a, b)
            return Outcome(
                summary: "dot of two \(size)-float vectors", duration: d,
                verified: verify ? relative(Double(out), want) : nil, detail: "\(out) (host \(want))")
        case "sum":
            let a = values.floats(size, -1, 1)
            let (out, d) = try await time { try await Operations.sum.run(a, on: device, catalog: catalog) }
            let want = a.reduce(0.0) { $0 + Double($1) }
            return Outcome(
                summary: "sum of \(size) floats", duration: d,
                verified: verify ? relative(Double(out), want) : nil, detail: "\(out) (host \(want))")
        case "matmul":
            let a = values.floats(size * size, -1, 1), b = values.floats(size * size, -1, 1)
            let (out, d) = try await time {
                try await Operations.matmul.run(
                    .init(a: a, b: b, m: size, n: size, k: size), on: device, catalog: catalog)
            }
            var ok: Bool?
            if verify {
                let want = HostReference.matmul(a, b, m: size, n: size, k: size)
                ok = (0..<size * size).allSatisfy { abs(Double(out[$0]) - want[$0]) <= 1e-3 * (1 + abs(want[$0])) }
            }
            let gflops = 2 * Double(size) * Double(size) * Double(size) / Double(d.nanoseconds)
            return Outcome(
                summary: "\(size)x\(size) float32 matmul", duration: d, verified: ok,
                detail: String(format: "%.2f GFLOP/s including transfers", gflops))
        case "softmax":
            let rows = 64
            let x = values.floats(rows * size, -5, 5)
            let (out, d) = try await time {
                try await Operations.softmax.run((x: x, rows: rows, cols: size), on: device, catalog: catalog)
            }
            var ok: Bool?
            if verify {
                let want = HostReference.softmax(x, rows: rows, cols: size)
                ok = (0..<x.count).allSatisfy { abs(Double(out[$0]) - want[$0]) <= 1e-5 }
            }
            return Outcome(
                summary: "softmax of \(rows) rows x \(size) columns", duration: d, verified: ok,
                detail: "y[0] = \(out[0])")
        case "topk":
            let dim = 64, queries = 8, k = min(10, size)
            let matrix = values.floats(size * dim, -1, 1), q = values.floats(queries * dim, -1, 1)
            let (out, d) = try await time {
                try await Operations.topK.run(
                    (queries: q, matrix: matrix, dim: dim, k: k), on: device, catalog: catalog)
            }
            var ok: Bool?
            if verify {
                let want = HostReference.topK(queries: q, matrix: matrix, dim: dim, k: k)
                ok = (0..<queries).allSatisfy { qi in
                    (0..<k).allSatisfy { abs(Double(out[qi][$0].score) - want[qi][$0].score) <= 1e-4 }
                }
            }
            return Outcome(
                summary: "cosine top-\(k) of \(queries) queries over \(size) x \(dim)", duration: d, verified: ok,
                detail: "query 0 best: row \(out[0][0].index) (\(out[0][0].score))")
        case "histogram":
            let v = values.floats(size, -1, 1)
            let (out, d) = try await time {
                try await Operations.histogram.run((values: v, bins: 256, lo: -1, hi: 1), on: device, catalog: catalog)
            }
            let ok = verify ? out == HostReference.histogram(v, bins: 256, lo: -1, hi: 1) : nil
            return Outcome(
                summary: "256-bin histogram of \(size) floats", duration: d, verified: ok,
                detail: "total \(out.reduce(0, +))")
        default:
            let a = values.floats(size, -1, 1), b = values.floats(size, -1, 1)
            let (out, d) = try await time {
                try await Operations.vectorAdd.run(.init(a, b), on: device, catalog: catalog)
            }
            let ok = verify ? (0..<size).allSatisfy { out[$0] == a[$0] + b[$0] } : nil
            return Outcome(
                summary: "c = a + b over \(size) floats", duration: d, verified: ok, detail: "c[0] = \(out[0])")
        }
    }
}
