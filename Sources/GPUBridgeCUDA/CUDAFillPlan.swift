/// One driver command of a fill, at a byte offset from the start of the filled region. A value made by
/// `CUDAFillPlan`; any thread.
public enum CUDAFillStep: Sendable, Hashable {
    /// `cuMemsetD8Async(start + offset, value, count)`.
    case set8(offset: Int, value: UInt8, count: Int)
    /// `cuMemsetD16Async(start + offset, value, count)`; `start + offset` is 2-byte aligned.
    case set16(offset: Int, value: UInt16, count: Int)
    /// `cuMemsetD32Async(start + offset, value, count)`; `start + offset` is 4-byte aligned.
    case set32(offset: Int, value: UInt32, count: Int)
    /// `cuMemcpyDtoDAsync(start + to, start + from, byteCount)`; the two ranges do not overlap.
    case copy(from: Int, to: Int, byteCount: Int)
}

/// How the CUDA backend fills a region with a repeated 1-, 2-, 4- or 8-byte pattern, in as few full-width passes
/// as the driver allows.
///
/// The pattern is first reduced to its shortest period (`[7, 7]` is a 1-byte pattern, `[1, 2, 1, 2, 1, 2, 1, 2]` a
/// 2-byte one). A 1-byte period is one `cuMemsetD8Async`. A 2- or 4-byte period is one `cuMemsetD16Async` /
/// `cuMemsetD32Async` over the aligned middle of the region, with the pattern rotated to start there, and at most
/// three single bytes at each end. The driver has no 8-byte memset: an 8-byte period writes its first 8 bytes with
/// `cuMemsetD8Async` and then doubles the filled prefix with device-to-device copies (`[0, n)` to `[n, 2n)`), about
/// log2(byteCount / 8) copies that each run at copy bandwidth, instead of one strided pass per byte.
///
/// A value type; pure: `steps` only computes.
public enum CUDAFillPlan {
    /// The commands that fill `byteCount` bytes starting at device address `address` with `pattern` repeated
    /// (the pattern's first byte at `address`). `pattern.count` is 1, 2, 4 or 8 and divides `byteCount`.
    public static func steps(address: UInt64, byteCount: Int, pattern: [UInt8]) -> [CUDAFillStep] {
        guard byteCount > 0, !pattern.isEmpty else { return [] }
        let period = shortestPeriod(pattern)
        let width = period.count
        if width == 1 { return [.set8(offset: 0, value: period[0], count: byteCount)] }
        if width == 8 { return doubling(byteCount: byteCount, pattern: period) }
        // 2 or 4: single bytes up to the first aligned address, one wide memset, single bytes after it.
        let misalignment = Int(address % UInt64(width))
        let head = min(byteCount, (width - misalignment) % width)
        let elements = (byteCount - head) / width
        let tailStart = head + elements * width
        var steps: [CUDAFillStep] = []
        for offset in 0..<head { steps.append(.set8(offset: offset, value: period[offset % width], count: 1)) }
        if elements > 0 {
            var value: UInt32 = 0
            for j in 0..<width { value |= UInt32(period[(head + j) % width]) << (8 * j) }
            steps.append(
                width == 2
                    ? .set16(offset: head, value: UInt16(truncatingIfNeeded: value), count: elements)
                    : .set32(offset: head, value: value, count: elements))
        }
        for offset in tailStart..<byteCount {
            steps.append(.set8(offset: offset, value: period[offset % width], count: 1))
        }
        return steps
    }

    /// The first `width` bytes one by one, then copies that double the filled prefix until the region is full.
    private static func doubling(byteCount: Int, pattern: [UInt8]) -> [CUDAFillStep] {
        let width = pattern.count
        var steps: [CUDAFillStep] = []
        for offset in 0..<min(width, byteCount) {
            steps.append(.set8(offset: offset, value: pattern[offset], count: 1))
        }
        var filled = width
        while filled < byteCount {
            let count = min(filled, byteCount - filled)
            steps.append(.copy(from: 0, to: filled, byteCount: count))
            filled += count
        }
        return steps
    }

    /// The shortest prefix whose repetition is `pattern` (lengths 1, 2, 4 or 8 only: halves while they match).
    static func shortestPeriod(_ pattern: [UInt8]) -> [UInt8] {
        var period = pattern
        while period.count > 1, period.count % 2 == 0,
            period[..<(period.count / 2)].elementsEqual(period[(period.count / 2)...])
        {
            period = Array(period[..<(period.count / 2)])
        }
        return period
    }
}
