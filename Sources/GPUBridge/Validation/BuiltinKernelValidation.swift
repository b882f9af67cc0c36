/// The launches that validate each built-in kernel (`BuiltinKernels.all`) at a problem size, shared by
/// `gpubridge validate` and the tests.
///
/// `size` means what it means for `gpubridge run`: elements for the vector kernels, the reductions and the
/// histogram; the side of square matrices for `matmul`; the columns of 64 rows for `softmax_rows`; the matrix rows
/// searched by 8 queries of dimension 64 for `cosine_scores` and `topk_select` (k = min(10, size)).
///
/// The launch shape is fixed per kernel and size, never per device, so both sides run the same work-items. The
/// reductions (`dot_partial`, `sum_partial`) run one group of 256: their per-group partials depend on how a backend
/// deals elements to groups (contiguous on CPU devices, grid-stride on GPUs), their total does not. Tolerances: the
/// float32 default for elementwise kernels, `cosine_scores` and `softmax_rows`; for sums of `n` products of values
/// in -1...1 (`dot_partial`, `sum_partial`, `matmul` with n = its side) absolute 1e-4 * sqrt(n) (1e-4 of the sum's
/// typical magnitude) plus relative 1e-4: the two sides add in different orders and precisions. `topk_select`
/// consumes its `scores`, which are not compared; its indices compare exactly. `histogram` counts compare exactly.
///
/// Stateless: any thread. Cost: building a `ValidationLaunch` is a few allocations; the bytes are made by the
/// validator.
public enum BuiltinKernelValidation {
    /// The built-in kernels' ids, sorted.
    public static var kernels: [String] { BuiltinKernels.all.map(\.id).sorted() }

    /// The size `gpubridge validate` uses for `id` when none is given.
    public static func defaultSize(_ id: String) throws(GPUBridgeError) -> Int {
        try shape(id).defaultSize
    }

    /// The largest size `launch(_:size:)` accepts for `id` (its 32-bit counts must not overflow).
    public static func maximumSize(_ id: String) throws(GPUBridgeError) -> Int {
        try shape(id).maximumSize
    }

    /// The launch that validates built-in kernel `id` at `size`; `notFound` for an id that is not built in,
    /// `invalidArgument` for a size outside 1...`maximumSize(id)`.
    public static func launch(_ id: String, size: Int) throws(GPUBridgeError) -> ValidationLaunch {
        let limit = try shape(id).maximumSize
        guard size >= 1, size <= limit else {
            throw .invalidArgument(name: "size", value: String(size), limit: "1...\(limit) for \(id)")
        }
        let n = Int32(size)
        let group = BuiltinKernels.group
        switch id {
        case "vector_add":
            return ValidationLaunch(
                .covering(size),
                arguments: [
                    .buffer(.float32, count: size), .buffer(.float32, count: size), .buffer(.float32, count: size),
                    .int32(n),
                ])
        case "saxpy", "scale":
            return ValidationLaunch(
                .covering(size),
                arguments: [
                    .buffer(.float32, count: size), .buffer(.float32, count: size),
                    .float(id == "saxpy" ? 1.5 : -0.25), .int32(n),
                ])
        case "dot_partial":
            return ValidationLaunch(
                Launch(groups: Extent3(1), groupSize: Extent3(group)),
                arguments: [
                    .buffer(.float32, count: size), .buffer(.float32, count: size),
                    .buffer(.float32, count: 1, tolerance: sumTolerance(terms: size)), .int32(n),
                ])
        case "sum_partial":
            return ValidationLaunch(
                Launch(groups: Extent3(1), groupSize: Extent3(group)),
                arguments: [
                    .buffer(.float32, count: size), .buffer(.float32, count: 1, tolerance: sumTolerance(terms: size)),
                    .int32(n),
                ])
        case "matmul":
            let tile = BuiltinKernels.tile, tiles = (size + tile - 1) / tile
            return ValidationLaunch(
                Launch(groups: Extent3(tiles, tiles), groupSize: Extent3(tile, tile)),
                arguments: [
                    .buffer(.float32, count: size * size), .buffer(.float32, count: size * size),
                    .buffer(.float32, count: size * size, tolerance: sumTolerance(terms: size)),
                    .int32(n), .int32(n), .int32(n),
                ])
        case "softmax_rows":
            let rows = 64
            return ValidationLaunch(
                Launch(groups: Extent3(rows), groupSize: Extent3(group)),
                arguments: [
                    .buffer(.float32, count: rows * size, contents: .uniform(lower: -5, upper: 5)),
                    .buffer(.float32, count: rows * size), .int32(Int32(rows)), .int32(n),
                ])
        case "cosine_scores":
            let queries = 8, dim = 64
            return ValidationLaunch(
                Launch(groups: Extent3((size + group - 1) / group, queries), groupSize: Extent3(group, 1)),
                arguments: [
                    .buffer(.float32, count: queries * dim), .buffer(.float32, count: size * dim),
                    .buffer(.float32, count: queries * size), .int32(Int32(queries)), .int32(n), .int32(Int32(dim)),
                ])
        case "topk_select":
            let queries = 8, k = min(10, size)
            return ValidationLaunch(
                Launch(groups: Extent3(queries), groupSize: Extent3(group)),
                arguments: [
                    .buffer(.float32, count: queries * size, comparison: .never), .buffer(.int32, count: queries * k),
                    .buffer(.float32, count: queries * k), .int32(Int32(queries)), .int32(n), .int32(Int32(k)),
                ])
        default:  // histogram
            let bins = 256
            return ValidationLaunch(
                Launch(groups: Extent3(min(64, (size + group - 1) / group)), groupSize: Extent3(group)),
                arguments: [
                    .buffer(.float32, count: size, contents: .uniform(lower: -1.25, upper: 1.25)),
                    .buffer(.uint32, count: bins), .int32(n), .int32(Int32(bins)), .float(-1), .float(1),
                ])
        }
    }

    /// Absolute 1e-4 * sqrt(terms), relative 1e-4: for a float32 sum of `terms` values in -1...1 added in another
    /// order (or precision) on the other side.
    static func sumTolerance(terms: Int) -> ValidationTolerance {
        ValidationTolerance(absolute: 1e-4 * Double(terms).squareRoot(), relative: 1e-4)
    }

    private static func shape(_ id: String) throws(GPUBridgeError) -> (defaultSize: Int, maximumSize: Int) {
        let all = Int(Int32.max)
        switch id {
        case "vector_add", "saxpy", "scale", "dot_partial", "sum_partial", "histogram": return (1_000_000, all)
        case "matmul": return (256, 46_340)
        case "softmax_rows", "cosine_scores": return (id == "softmax_rows" ? 1000 : 10_000, all / 64)
        case "topk_select": return (10_000, all / 8)
        default: throw .notFound(kind: "built-in kernel", name: id)
        }
    }
}
