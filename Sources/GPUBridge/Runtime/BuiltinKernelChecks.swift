/// Runs every built-in operation on one device against the host reference, on deterministic pseudo-random inputs,
/// and returns a list of failures (empty when all agree within the stated tolerances). Shared by the CPU, OpenCL and
/// CUDA test suites and by `gpubridge selftest`, so every backend is held to the same checks.
///
/// Tolerances: elementwise float32 results exact (vector add, scale) or within 1e-6 relative (saxpy, which may fuse);
/// reductions (dot, sum) within 1e-4 relative of a double-precision sum; matmul within 1e-3 * (1 + |c|);
/// softmax within 1e-5 absolute; top-k scores within 1e-4 of the double-precision cosine, indices equal except where
/// two candidates' scores are within 1e-5 (a near-tie may order either way in float32); histogram exact.
public enum BuiltinKernelChecks {
    public static func run(on device: Device, catalog: KernelCatalog = KernelCatalog(), seed: UInt64 = 42) async
        -> [String]
    {
        var failures: [String] = []
        var values = SplitMix64(seed: seed)
        func check(_ name: String, _ body: () async throws -> String?) async {
            do {
                if let problem = try await body() { failures.append("\(name): \(problem)") }
            } catch {
                failures.append("\(name): threw \(error)")
            }
        }
        for n in [1, 1000, 300_007] {
            let a = values.floats(n, -1, 1), b = values.floats(n, -1, 1)
            await check("vector_add n=\(n)") {
                let c = try await Operations.vectorAdd.run(.init(a, b), on: device, catalog: catalog)
                return (0..<n).allSatisfy { c[$0] == a[$0] + b[$0] } ? nil : "differs from a + b"
            }
            await check("saxpy n=\(n)") {
                let y = try await Operations.saxpy.run((alpha: 1.5, x: a, y: b), on: device, catalog: catalog)
                return (0..<n).allSatisfy { abs(y[$0] - (1.5 * a[$0] + b[$0])) <= 1e-6 * (1 + abs(y[$0])) }
                    ? nil : "differs from alpha*x + y"
            }
            await check("scale n=\(n)") {
                let y = try await Operations.scale.run((alpha: -0.25, x: a), on: device, catalog: catalog)
                return (0..<n).allSatisfy { y[$0] == -0.25 * a[$0] } ? nil : "differs from alpha*x"
            }
            await check("dot n=\(n)") {
                let got = Double(try await Operations.dot.run(.init(a, b), on: device, catalog: catalog))
                let want = HostReference.dot(a, b)
                return abs(got - want) <= 1e-4 * max(1, abs(want)) ? nil : "got \(got), want \(want)"
            }
            await check("sum n=\(n)") {
                let got = Double(try await Operations.sum.run(a, on: device, catalog: catalog))
                let want = a.reduce(0.0) { $0 + Double($1) }
                return abs(got - want) <= 1e-4 * max(1, abs(want)) ? nil : "got \(got), want \(want)"
            }
        }
        for (m, n, k) in [(1, 1, 1), (17, 33, 29), (64, 48, 128)] {
            let a = values.floats(m * k, -1, 1), b = values.floats(k * n, -1, 1)
            await check("matmul \(m)x\(k) * \(k)x\(n)") {
                let c = try await Operations.matmul.run(
                    .init(a: a, b: b, m: m, n: n, k: k), on: device, catalog: catalog)
                let want = HostReference.matmul(a, b, m: m, n: n, k: k)
                let bad = (0..<m * n).filter { abs(Double(c[$0]) - want[$0]) > 1e-3 * (1 + abs(want[$0])) }
                return bad.isEmpty
                    ? nil : "\(bad.count) elements off, first at \(bad[0]): \(c[bad[0]]) vs \(want[bad[0]])"
            }
        }
        for (rows, cols) in [(1, 1), (7, 300), (32, 1024)] {
            let x = values.floats(rows * cols, -5, 5)
            await check("softmax \(rows)x\(cols)") {
                let y = try await Operations.softmax.run((x: x, rows: rows, cols: cols), on: device, catalog: catalog)
                let want = HostReference.softmax(x, rows: rows, cols: cols)
                let bad = (0..<x.count).filter { abs(Double(y[$0]) - want[$0]) > 1e-5 }
                return bad.isEmpty ? nil : "\(bad.count) elements off"
            }
        }
        do {
            let dim = 24, rows = 2000, q = 5, k = 10
            let matrix = values.floats(rows * dim, -1, 1), queries = values.floats(q * dim, -1, 1)
            await check("cosine top-k \(q) queries x \(rows) rows, k=\(k)") {
                let got = try await Operations.topK.run(
                    (queries: queries, matrix: matrix, dim: dim, k: k), on: device, catalog: catalog)
                let want = HostReference.topK(queries: queries, matrix: matrix, dim: dim, k: k)
                for qi in 0..<q {
                    for j in 0..<k {
                        let g = got[qi][j], w = want[qi][j]
                        if abs(Double(g.score) - w.score) > 1e-4 {
                            return "query \(qi) rank \(j): score \(g.score) vs \(w.score)"
                        }
                        if g.index != w.index {
                            // Accept a swap only between candidates whose true scores are within 1e-5.
                            let other = want[qi].first { $0.index == g.index }
                            guard let other, abs(other.score - w.score) <= 1e-5 else {
                                return "query \(qi) rank \(j): index \(g.index) vs \(w.index)"
                            }
                        }
                    }
                }
                return nil
            }
        }
        for (n, bins) in [(1000, 10), (250_000, 256)] {
            let v = values.floats(n, -2, 2)
            await check("histogram n=\(n) bins=\(bins)") {
                let got = try await Operations.histogram.run(
                    (values: v, bins: bins, lo: -1.5, hi: 1.5), on: device, catalog: catalog)
                let want = HostReference.histogram(v, bins: bins, lo: -1.5, hi: 1.5)
                return got == want ? nil : "counts differ (total \(got.reduce(0, +)) vs \(want.reduce(0, +)))"
            }
        }
        return failures
    }
}
