#if SwiftKernels
    import GPUBridge
    import GPUBridgeKernels

    // Swift kernels the tests run on every backend they have. Each exercises a part of the subset.

    @GPUKernel
    func saxpy(_ item: WorkItem, a: Float, x: DeviceArray<Float>, y: MutableDeviceArray<Float>, n: Int32) {
        let i = item.globalID(0)
        if i < n {
            y[i] = a * x[i] + y[i]
        }
    }

    /// Double math: sqrt, exp, log, pow, sin, cos, tanh, floor, ceil, fma, abs, min, max, a ternary and conversions.
    @GPUKernel
    func doubleMath(_ item: WorkItem, input: DeviceArray<Double>, output: MutableDeviceArray<Double>, n: Int32) {
        let i = item.globalID(0)
        if i >= n { return }
        let x = input[i]
        var r = sqrt(abs(x)) + exp(-abs(x)) + log(1.0 + abs(x))
        r += pow(abs(x), 1.5) * 0.25 + sin(x) * cos(x) + tanh(x)
        r = fma(r, 0.5, floor(x) - ceil(x))
        r = max(min(r, 1000.0), -1000.0)
        output[i] = x < 0 ? -r : r + Double(i % 3)
    }

    /// Integers: loops (range, closed range, stride, while), break and continue, bitwise and shift operators, wrapping
    /// arithmetic and conversions.
    @GPUKernel
    func integerMix(_ item: WorkItem, seeds: DeviceArray<UInt32>, output: MutableDeviceArray<Int32>, n: Int32) {
        let i = item.globalID(0)
        if i < n {
            var h: UInt32 = seeds[i]
            for k in 0..<8 {
                h = (h ^ (h >> 13)) &* 0x5bd1_e995
                h ^= UInt32(k) << 3
            }
            var sum: Int32 = 0
            for k: Int32 in 1...5 {
                sum += k
            }
            for k in stride(from: Int32(10), to: 0, by: -3) {
                sum += k
            }
            var steps: Int32 = 0
            var m = h % 97
            while m != 0 {
                steps += 1
                if steps > 50 { break }
                if m & 1 == 0 {
                    m = m / 2
                    continue
                }
                m = m &* 3 &+ 1
                m = m % 97
            }
            output[i] = Int32(h & 0xffff) - sum + steps * 1000
        }
    }

    /// A helper function: called by kernels and by another helper.
    @GPUFunction
    func softplus(_ x: Float) -> Float {
        if x > 20 { return x }
        return log(1 + exp(x))
    }

    /// A helper with a labelled parameter that calls another helper.
    @GPUFunction
    func scaledSoftplus(_ x: Float, by factor: Float) -> Float {
        return softplus(x) * factor
    }

    /// Calls two helpers, one of them through another.
    @GPUKernel
    func activate(_ item: WorkItem, v: MutableDeviceArray<Float>, factor: Float, n: Int32) {
        let i = item.globalID(0)
        if i < n {
            let s: Float = scaledSoftplus(v[i], by: factor)
            v[i] = s + softplus(-v[i])
        }
    }

    /// Atomics: add (using the value it returns), min and max on UInt32 and Int32 elements.
    @GPUKernel
    func histogram(
        _ item: WorkItem, values: DeviceArray<UInt32>, bins: MutableDeviceArray<Int32>,
        stats: MutableDeviceArray<UInt32>, spread: MutableDeviceArray<Int32>, binCount: UInt32, n: Int32
    ) {
        let i = item.globalID(0)
        if i < n {
            let v = values[i]
            let before = bins.atomicAdd(Int32(v % binCount), 1)
            if before == 0 { stats.atomicAdd(2, 1) }  // bins hit
            stats.atomicMin(0, v)
            stats.atomicMax(1, v)
            spread.atomicMin(0, Int32(v % 1000) - 500)
            spread.atomicMax(1, Int32(v % 1000) - 500)
        }
    }

    /// Float atomics on a buffer: a sum, a minimum and a maximum of every value, and a counter whose values before
    /// (each work-item's ticket) are marked in `tickets`.
    @GPUKernel
    func floatAtomics(
        _ item: WorkItem, values: DeviceArray<Float>, totals: MutableDeviceArray<Float>,
        tickets: MutableDeviceArray<UInt32>, n: Int32
    ) {
        let i = item.globalID(0)
        if i < n {
            let v = values[i]
            totals.atomicAdd(0, v)
            totals.atomicMin(1, v)
            totals.atomicMax(2, v)
            let ticket = totals.atomicAdd(3, 1)
            tickets.atomicAdd(Int32(ticket), 1)
        }
    }
#endif
