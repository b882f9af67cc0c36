/// The CPU backend's `matmul` built-in: `C[MxN] = A[MxK] * B[KxN]`, float32, row-major.
///
/// The launch has one group per 16x16 tile of C (`launch.groups.x` column tiles per row tile, row tiles after that),
/// and each call gets a contiguous range of linear group indices. With a CBLAS (`BLASLibrary.shared`) a call computes
/// its tiles with at most three `cblas_sgemm`s on sub-matrices (see `bands`); without one it runs the hand-written
/// tiled loop. Either way a call writes exactly its own tiles of C, so concurrent calls never overlap.
///
/// Stateless; any thread. Cost: 2·M·N·K flops per launch.
enum CPUMatmul {
    /// How the tiles are computed.
    enum Implementation: Sendable {
        /// `cblas_sgemm` from this library.
        case blas(BLASLibrary)
        /// The hand-written tiled loop.
        case builtin
    }

    /// A rectangle of tiles: row tiles `rows`, column tiles `columns`.
    struct Band: Sendable, Equatable {
        let rows: Range<Int>
        let columns: Range<Int>
    }

    /// The library when one was found, else the hand-written loop.
    static var preferred: Implementation {
        switch BLASLibrary.shared {
        case let .success(library): .blas(library)
        case .failure: .builtin
        }
    }

    /// How the CPU backend spreads a `matmul` launch: `threaded` (one `cblas_sgemm` over the whole product) when the
    /// library threads each call itself, `perCore` (one call per core on row bands) when it runs a call on one
    /// thread, or when there is no library and the hand-written loop runs.
    static var scheduling: SwiftKernel.Scheduling {
        switch BLASLibrary.shared {
        case let .success(library) where (library.threadsPerCall ?? 1) > 1: .threaded
        default: .perCore
        }
    }

    /// Runs the kernel's arguments `(A, B, C, M, N, K)` over `context.groups`.
    static func run(_ context: CPUKernelContext, using implementation: Implementation = preferred)
        throws(GPUBridgeError)
    {
        let a = try context.buffer(0, as: Float.self), b = try context.buffer(1, as: Float.self)
        let c = try context.buffer(2, as: Float.self)
        let m = try context.integer(3), n = try context.integer(4), k = try context.integer(5)
        guard m >= 0, n >= 0, k >= 0 else {
            throw .argumentMismatch(kernel: context.kernel, detail: "M, N, K = \(m), \(n), \(k): negative size")
        }
        for (name, buffer, needed) in [("A", a, m * k), ("B", b, k * n), ("C", c, m * n)] where buffer.count < needed {
            throw .argumentMismatch(
                kernel: context.kernel,
                detail: "\(name) holds \(buffer.count) floats, M, N, K = \(m), \(n), \(k) need \(needed)")
        }
        let columnTiles = context.launch.groups.x
        guard m > 0, n > 0, columnTiles > 0 else { return }
        switch implementation {
        case let .blas(library):
            for band in bands(context.groups, columnTiles: columnTiles) {
                multiply(band, a: a, b: b, c: c, m: m, n: n, k: k, sgemm: library.sgemm)
            }
        case .builtin:
            tiled(context.groups, columnTiles: columnTiles, a: a, b: b, c: c, m: m, n: n, k: k)
        }
    }

    /// The tiles of `groups` (linear indices, `columnTiles` per row) as at most three rectangles: the partial first row
    /// band, the whole row bands in between, and the partial last row band.
    static func bands(_ groups: Range<Int>, columnTiles: Int) -> [Band] {
        guard !groups.isEmpty, columnTiles > 0 else { return [] }
        let firstRow = groups.lowerBound / columnTiles, firstColumn = groups.lowerBound % columnTiles
        let lastRow = (groups.upperBound - 1) / columnTiles, endColumn = (groups.upperBound - 1) % columnTiles + 1
        if firstRow == lastRow {
            return [Band(rows: firstRow..<firstRow + 1, columns: firstColumn..<endColumn)]
        }
        var result: [Band] = []
        var middle = firstRow..<lastRow + 1
        if firstColumn != 0 {
            result.append(Band(rows: firstRow..<firstRow + 1, columns: firstColumn..<columnTiles))
            middle = firstRow + 1..<middle.upperBound
        }
        var last: Band?
        if endColumn != columnTiles {
            last = Band(rows: lastRow..<lastRow + 1, columns: 0..<endColumn)
            middle = middle.lowerBound..<lastRow
        }
        if !middle.isEmpty { result.append(Band(rows: middle, columns: 0..<columnTiles)) }
        if let last { result.append(last) }
        return result
    }

    /// `C[band] = A[band rows, :] * B[:, band columns]` with one `cblas_sgemm` on sub-matrices; tiles past M or N are
    /// clipped.
    private static func multiply(
        _ band: Band, a: UnsafeMutableBufferPointer<Float>, b: UnsafeMutableBufferPointer<Float>,
        c: UnsafeMutableBufferPointer<Float>, m: Int, n: Int, k: Int, sgemm: BLASLibrary.SGEMM
    ) {
        let tile = BuiltinKernels.tile
        let row0 = min(m, band.rows.lowerBound * tile), row1 = min(m, band.rows.upperBound * tile)
        let column0 = min(n, band.columns.lowerBound * tile), column1 = min(n, band.columns.upperBound * tile)
        guard row0 < row1, column0 < column1, let cBase = c.baseAddress else { return }
        guard k > 0, let aBase = a.baseAddress, let bBase = b.baseAddress else {
            // An empty sum: BLAS would reject lda = 0, and there is nothing to read.
            for r in row0..<row1 { (cBase + r * n + column0).update(repeating: 0, count: column1 - column0) }
            return
        }
        sgemm(
            BLASLibrary.rowMajor, BLASLibrary.noTranspose, BLASLibrary.noTranspose, Int32(row1 - row0),
            Int32(column1 - column0), Int32(k), 1, aBase + row0 * k, Int32(k), bBase + column0, Int32(n), 0,
            cBase + row0 * n + column0, Int32(n))
    }

    /// The hand-written kernel: each 16x16 tile of C row by row, accumulating a row of the tile over K.
    private static func tiled(
        _ groups: Range<Int>, columnTiles gx: Int, a: UnsafeMutableBufferPointer<Float>,
        b: UnsafeMutableBufferPointer<Float>, c: UnsafeMutableBufferPointer<Float>, m: Int, n: Int, k: Int
    ) {
        let tile = BuiltinKernels.tile
        let accumulator = UnsafeMutableBufferPointer<Float>.allocate(capacity: tile)
        defer { accumulator.deallocate() }
        for g in groups {
            let col0 = (g % gx) * tile, row0 = (g / gx) * tile
            let width = max(0, min(tile, n - col0))
            for r in row0..<max(row0, min(m, row0 + tile)) {
                for j in 0..<width { accumulator[j] = 0 }
                for p in 0..<k {
                    let av = a[r * k + p]
                    let base = p * n + col0
                    for j in 0..<width { accumulator[j] += av * b[base + j] }
                }
                for j in 0..<width { c[r * n + col0 + j] = accumulator[j] }
            }
        }
    }
}
