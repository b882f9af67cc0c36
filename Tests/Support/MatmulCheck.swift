import GPUBridge

/// Runs a `matmul`-shaped kernel and compares it with a double-precision host product; shared by the CPU, OpenCL and
/// CUDA matmul tests.
public enum MatmulCheck {
    /// Deterministic values in [-1, 1).
    public static func values(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2048) / 1024 - 1
        }
    }

    /// Launches `kernel` as `Operations.matmul` does (16x16 tiles covering C), on a C pre-filled with NaN (so an
    /// unwritten element fails), and checks every element against a double-precision host product within 4·K·ε of
    /// Σ|a||b| (the classic bound on a float dot product's rounding error). Returns the number of bad elements.
    public static func mismatches(_ kernel: Kernel, on device: Device, m: Int, n: Int, k: Int) async throws -> Int {
        let a = values(m * k, seed: UInt64(m * 1000 + k)), b = values(k * n, seed: UInt64(n * 1000 + k + 7))
        let tile = LibraryRoutine.sgemmTile
        let aBuffer = try device.makeBuffer(copying: a), bBuffer = try device.makeBuffer(copying: b)
        let cBuffer = try device.makeBuffer(copying: [Float](repeating: .nan, count: m * n))
        try await device.launch(
            kernel,
            Launch(groups: Extent3((n + tile - 1) / tile, (m + tile - 1) / tile), groupSize: Extent3(tile, tile)),
            arguments: [
                .buffer(aBuffer), .buffer(bBuffer), .buffer(cBuffer), .int32(Int32(m)), .int32(Int32(n)),
                .int32(Int32(k)),
            ])
        let got = try cBuffer.toArray()
        let want = HostReference.matmul(a, b, m: m, n: n, k: k)
        let magnitude = HostReference.matmul(a.map(\.magnitude), b.map(\.magnitude), m: m, n: n, k: k)
        let epsilon = 4 * Double(k) * Double(Float.ulpOfOne)
        var bad = 0
        for i in 0..<m * n where !(abs(Double(got[i]) - want[i]) <= epsilon * magnitude[i] + 1e-30) { bad += 1 }
        return bad
    }
}
