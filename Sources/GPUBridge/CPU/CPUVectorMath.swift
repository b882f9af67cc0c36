internal import CGPUBridgeVectorMath
import Glibc

/// The vector loops behind the CPU backend's built-in reductions, softmax and cosine scores.
///
/// Two kinds of loop, both compiled to the host's vector instructions: sums and dot products load 16 floats at a time
/// as `SIMD16<Float>` and use only its `+` and `*` (the operations the standard library maps straight to vector
/// instructions; its generic helpers such as `addProduct`, `pointwiseMax`, `rounded` and `replace(with:where:)` run
/// lane by lane, and measured several times slower than scalar code); the element-wise loops of softmax (maximum,
/// exp, scale) and the short dot products of the cosine scores (a query against each row of a block, and the rows'
/// norms) are plain C loops without traps or calls in `CGPUBridgeVectorMath`, which clang vectorises and, on
/// x86-64, compiles once per instruction set (AVX-512, AVX2 + FMA, baseline), the loader picking the best the
/// processor has. Swift has no per-function target attributes, so this module's own loops get the x86-64 baseline's
/// 4-wide SSE; the `exp` below is the scalar reference the C polynomial follows.
///
/// Sums accumulate in float lanes over blocks of `block` elements and add each block's total into a `Double`, so the
/// error stays that of a short float sum however long the input. `exp` is a Cephes-style polynomial (range reduction
/// by ln 2, degree-5 polynomial, exponent by bit arithmetic), within 2 ulp of `expf` over the float range; it returns
/// 0 below -87.3 (where `expf` goes subnormal), infinity above 88.7 and NaN for NaN.
///
/// Stateless; any thread may call it. Callers pass memory they own for the duration of the call.
enum CPUVectorMath {
    typealias Lanes = SIMD16<Float>
    static let width = Lanes.scalarCount
    /// Elements summed in float lanes before the block's total is added in double.
    static let block = 4096

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ i: Int) -> Lanes {
        UnsafeRawPointer(p + i).loadUnaligned(as: Lanes.self)
    }

    /// The sum of `x[range]`.
    static func sum(_ x: UnsafePointer<Float>, _ range: Range<Int>) -> Double {
        blockSum(range, lanes: { load(x, $0) }, scalar: { x[$0] })
    }

    /// The dot product of `x[range]` and `y[range]`.
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ range: Range<Int>) -> Double {
        blockSum(range, lanes: { load(x, $0) * load(y, $0) }, scalar: { x[$0] * y[$0] })
    }

    /// The sum of a term over `range`: `lanes(i)` gives the 16 terms from `i`, `scalar(i)` the one at `i`. Two lane
    /// accumulators per block of `block` elements, each block's total added in double.
    @inline(__always)
    private static func blockSum(_ range: Range<Int>, lanes: (Int) -> Lanes, scalar: (Int) -> Float) -> Double {
        var total = 0.0
        var start = range.lowerBound
        while start < range.upperBound {
            let end = min(range.upperBound, start + block)
            var a = Lanes(), b = Lanes()
            var i = start
            while i + 2 * width <= end {
                a += lanes(i)
                b += lanes(i + width)
                i += 2 * width
            }
            var tail: Float = 0
            while i < end {
                tail += scalar(i)
                i += 1
            }
            total += Double((a + b).sum()) + Double(tail)
            start = end
        }
        return total
    }

    /// The largest of `x[0 ..< count]` (-infinity when empty; NaNs are skipped, as `max` skips them), in C
    /// (`gb_cpu_maximum`: compiled per instruction set, the best picked at load time).
    static func maximum(_ x: UnsafePointer<Float>, count: Int) -> Float { gb_cpu_maximum(x, count) }

    /// `y[i] = e^(x[i] - shift)` for `i < count`; returns the sum of the `y`. In C (`gb_cpu_exponentials`), with the
    /// same polynomial as `exp`: LLVM vectorises it 16 wide in the AVX-512 variant, where this module, compiled for
    /// the x86-64 baseline, gets 4 (4.2 times faster on one core of the measured VM).
    static func exponentials(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, shift: Float
    ) -> Float {
        Float(gb_cpu_exponentials(x, y, count, shift))
    }

    /// `y[i] *= factor` for `i < count`.
    static func scale(_ y: UnsafeMutablePointer<Float>, count: Int, by factor: Float) { gb_cpu_scale(y, count, factor) }

    /// `y = softmax(x)` over one row: the maximum, the exponentials shifted by it, scaled by one over their sum.
    static func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        gb_cpu_softmax_row(x, y, count)
    }

    /// Which compiled variant of the C loops this processor runs: "avx512f", "avx2+fma" or "baseline".
    static var variant: String { String(cString: gb_cpu_vector_math_variant()) }

    /// The dot product of `a[0 ..< count]` and `b[0 ..< count]` (a row of a matrix), in float, in C (`gb_cpu_dot`:
    /// 16 lanes, compiled per instruction set).
    static func shortDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        gb_cpu_dot(a, b, count)
    }

    /// `norms[r]` = the norm of row `r` of the row-major `count x dim` matrix at `rows`, for `r < count`, in C.
    static func rowNorms(
        _ rows: UnsafePointer<Float>, count: Int, dim: Int, into norms: UnsafeMutablePointer<Float>
    ) {
        gb_cpu_row_norms(rows, count, dim, norms)
    }

    /// `out[r]` = the cosine similarity of `query` (of norm `queryNorm`) and row `r` of the row-major `count x dim`
    /// matrix at `rows` (of norms `rowNorms`), 0 where the norms' product is not positive; in C, one call per block
    /// of rows (the AVX-512 variant measured about three times the 4-wide Swift loop it replaced).
    static func cosineRows(
        query: UnsafePointer<Float>, norm queryNorm: Float, rows: UnsafePointer<Float>, rowNorms: UnsafePointer<Float>,
        count: Int, dim: Int, into out: UnsafeMutablePointer<Float>
    ) {
        gb_cpu_cosine_rows(query, queryNorm, rows, rowNorms, count, dim, out)
    }

    /// The first index `i < count` with `x[i] > threshold` (never a NaN), or `count`; in C, 16 comparisons at a
    /// time.
    static func firstAbove(_ x: UnsafePointer<Float>, count: Int, threshold: Float) -> Int {
        gb_cpu_first_above(x, count, threshold)
    }

    /// e^x, written without branches, traps or calls so that a loop over it vectorises.
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        let high: Float = 88.72283, low: Float = -87.33654
        let clamped = Swift.min(Swift.max(x, low), high)
        // n = round(x / ln2) by the 1.5 * 2^23 trick: adding it leaves n in the low mantissa bits, in round-to-nearest.
        let magic: Float = 12_582_912
        let shifted = clamped * 1.442_695_04 + magic
        let n = shifted - magic
        let whole = Int32(bitPattern: shifted.bitPattern &- magic.bitPattern)
        // x = n ln2 + r, |r| <= ln2 / 2; ln2 split in two parts so n ln2 is exact.
        var r = clamped - n * 0.693_359_375
        r = r - n * -2.121_944_4e-4
        var p: Float = 1.987_569_15e-4
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_12e-1
        p = p * (r * r) + r + 1
        // 2^n by the exponent bits. n is in [-126, 128] after the clamp; 2^128 is not a float, so n = 128 scales by
        // 2^127 and then by 2.
        let capped = Swift.min(whole, 127)
        var result = p * Float(bitPattern: UInt32(bitPattern: (capped &+ 127) &<< 23))
        result = whole > 127 ? result * 2 : result
        result = x < low ? 0 : result
        result = x > high ? .infinity : result
        return x.isNaN ? x : result
    }
}
