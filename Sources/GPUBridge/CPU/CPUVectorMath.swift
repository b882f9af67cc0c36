import Glibc

/// The vector loops behind the CPU backend's built-in reductions, softmax and cosine scores: 16 float lanes at a time
/// (`SIMD16<Float>`, which the compiler maps to the host's vector registers), with a scalar loop for the tail.
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

    @inline(__always)
    static func store(_ v: Lanes, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: Lanes.self)
    }

    /// The sum of `x[range]`.
    static func sum(_ x: UnsafePointer<Float>, _ range: Range<Int>) -> Double {
        var total = 0.0
        var start = range.lowerBound
        while start < range.upperBound {
            let end = min(range.upperBound, start + block)
            var a = Lanes(), b = Lanes()
            var i = start
            while i + 2 * width <= end {
                a += load(x, i)
                b += load(x, i + width)
                i += 2 * width
            }
            var tail: Float = 0
            while i < end {
                tail += x[i]
                i += 1
            }
            total += Double((a + b).sum()) + Double(tail)
            start = end
        }
        return total
    }

    /// The dot product of `x[range]` and `y[range]`.
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ range: Range<Int>) -> Double {
        var total = 0.0
        var start = range.lowerBound
        while start < range.upperBound {
            let end = min(range.upperBound, start + block)
            var a = Lanes(), b = Lanes()
            var i = start
            while i + 2 * width <= end {
                a.addProduct(load(x, i), load(y, i))
                b.addProduct(load(x, i + width), load(y, i + width))
                i += 2 * width
            }
            var tail: Float = 0
            while i < end {
                tail += x[i] * y[i]
                i += 1
            }
            total += Double((a + b).sum()) + Double(tail)
            start = end
        }
        return total
    }

    /// The largest of `x[0 ..< count]` (-infinity when empty; NaNs are skipped, as `max` skips them).
    static func maximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var m = Lanes(repeating: -.infinity)
        var i = 0
        while i + width <= count {
            m = pointwiseMax(m, load(x, i))
            i += width
        }
        var result = m.max()
        while i < count {
            result = Swift.max(result, x[i])
            i += 1
        }
        return result
    }

    /// `y[i] = e^(x[i] - shift)` for `i < count`; returns the sum of the `y`.
    static func exponentials(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, shift: Float
    ) -> Float {
        let s = Lanes(repeating: shift)
        var acc = Lanes()
        var i = 0
        while i + width <= count {
            let e = exp(load(x, i) - s)
            store(e, y, i)
            acc += e
            i += width
        }
        var total = acc.sum()
        while i < count {
            let e = expf(x[i] - shift)
            y[i] = e
            total += e
            i += 1
        }
        return total
    }

    /// `y[i] *= factor` for `i < count`.
    static func scale(_ y: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
        let f = Lanes(repeating: factor)
        var i = 0
        while i + width <= count {
            store(load(y, i) * f, y, i)
            i += width
        }
        while i < count {
            y[i] *= factor
            i += 1
        }
    }

    /// The dot product of `a[0 ..< count]` and `b[0 ..< count]` and the squared norm of `b`, in float.
    @inline(__always)
    static func dotAndNorm(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> (Float, Float) {
        var d = Lanes(), n = Lanes()
        var i = 0
        while i + width <= count {
            let u = load(a, i), v = load(b, i)
            d.addProduct(u, v)
            n.addProduct(v, v)
            i += width
        }
        var dot = d.sum(), norm = n.sum()
        while i < count {
            dot += a[i] * b[i]
            norm += b[i] * b[i]
            i += 1
        }
        return (dot, norm)
    }

    /// e^x in every lane.
    @inline(__always)
    static func exp(_ x: Lanes) -> Lanes {
        let high = Lanes(repeating: 88.72283), low = Lanes(repeating: -87.33654)
        let clamped = pointwiseMin(pointwiseMax(x, low), high)
        // x = n ln2 + r, |r| <= ln2 / 2; ln2 split in two parts so n ln2 is exact.
        let n = (clamped * Lanes(repeating: 1.442_695_04) + Lanes(repeating: 0.5)).rounded(.down)
        var r = clamped - n * Lanes(repeating: 0.693_359_375)
        r = r - n * Lanes(repeating: -2.121_944_4e-4)
        var p = Lanes(repeating: 1.987_569_15e-4)
        p = p * r + Lanes(repeating: 1.398_199_95e-3)
        p = p * r + Lanes(repeating: 8.333_451_9e-3)
        p = p * r + Lanes(repeating: 4.166_579_59e-2)
        p = p * r + Lanes(repeating: 1.666_666_55e-1)
        p = p * r + Lanes(repeating: 5.000_000_12e-1)
        p = p * (r * r) + r + Lanes(repeating: 1)
        // 2^n by the exponent bits. n is in [-126, 128] after the clamp; 2^128 is not a float, so n = 128 scales by
        // 2^127 and then by 2.
        let whole = SIMD16<Int32>(n, rounding: .towardZero)
        let exponent = (pointwiseMin(whole, SIMD16<Int32>(repeating: 127)) &+ 127) &<< 23
        var result = p * unsafeBitCast(exponent, to: Lanes.self)
        result.replace(with: result * 2, where: whole .== 128)
        result.replace(with: 0, where: x .< low)
        result.replace(with: .infinity, where: x .> high)
        result.replace(with: x, where: x .!= x)
        return result
    }
}
