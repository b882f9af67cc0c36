import Dispatch
import Glibc
import Synchronization

/// The CPU backend's memory path: how its device memory is allocated, and how large copies and fills use every core.
///
/// - **Allocation.** Below `mappedBytes` an allocation is `posix_memalign`ed (64-byte aligned). From `mappedBytes`
///   up it is its own anonymous mapping, faulted in at once on every core (`MADV_POPULATE_WRITE` over one slice per
///   core; where the kernel lacks it, one write per page). A fresh buffer then costs its page faults when it is made,
///   split over the cores, instead of inside the first copy or launch on one core; the pool keeps the segment, so
///   later buffers of that memory cost nothing. When the kernel cannot supply the pages the mapping is undone and the
///   allocation fails with `ENOMEM`. The memory is committed as device memory is: a 1 GiB buffer holds 1 GiB of RAM
///   from the start. Transparent huge pages are not requested: with `MADV_HUGEPAGE` the kernel compacts memory
///   synchronously to find them, and on the measured VM that made allocations slower and erratic (docs/PERFORMANCE.md).
/// - **Copies and fills** of at least `parallelBytes` are split into one contiguous slice per core (cache-line
///   aligned) run with `DispatchQueue.concurrentPerform`; smaller ones are one `memcpy`/`memset` on the calling thread.
///   Overlapping device-to-device copies stay one `memmove`.
///
/// Stateless; any thread may call it. The caller keeps the memory alive for the duration of each call.
enum CPUMemory {
    /// Allocations of at least this many bytes are mapped and faulted in on all cores.
    static let mappedBytes = 4 << 20
    /// Copies and fills of at least this many bytes are split over the cores.
    static let parallelBytes = 4 << 20
    /// The least bytes one core is given in a split copy or fill.
    static let sliceBytes = 1 << 20
    /// `MADV_POPULATE_WRITE` (Linux 5.14): fault in a range, writable, without touching it from user space.
    private static let populateWrite: Int32 = 23
    private static let pageSize = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))

    /// Allocates `byteCount` bytes, 64-byte aligned, or returns the `errno` that refused them.
    static func allocate(byteCount: Int, cores: Int) -> Result<UnsafeMutableRawPointer, Errno> {
        guard byteCount >= mappedBytes else {
            var pointer: UnsafeMutableRawPointer?
            let status = posix_memalign(&pointer, CPUBackend.alignment, byteCount)
            guard status == 0, let pointer else { return .failure(Errno(code: status == 0 ? ENOMEM : status)) }
            return .success(pointer)
        }
        let length = mappedLength(byteCount)
        let mapped = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != MAP_FAILED else { return .failure(Errno(code: errno)) }
        let status = populate(mapped, length: length, cores: cores)
        guard status == 0 else {
            munmap(mapped, length)
            return .failure(Errno(code: status))
        }
        return .success(mapped)
    }

    /// Releases memory from `allocate(byteCount:cores:)`; `byteCount` must be the one it was allocated with.
    static func free(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        if byteCount >= mappedBytes {
            munmap(pointer, mappedLength(byteCount))
        } else {
            Glibc.free(pointer)
        }
    }

    private static func mappedLength(_ byteCount: Int) -> Int { (byteCount + pageSize - 1) / pageSize * pageSize }

    /// Faults in `length` bytes at `base`, one slice per core; returns 0 or the `errno` of the first failure.
    private static func populate(_ base: UnsafeMutableRawPointer, length: Int, cores: Int) -> Int32 {
        let failure = AtomicStatus()
        split(length, cores: cores, alignment: pageSize) { range in
            let start = base + range.lowerBound
            if madvise(start, range.count, populateWrite) == 0 { return }
            let error = errno
            guard error == EINVAL else {
                failure.record(error)
                return
            }
            // No MADV_POPULATE_WRITE: touch each page. Fresh anonymous pages read as zero, so writing zero keeps
            // the contents while making the kernel supply the page now.
            var offset = 0
            while offset < range.count {
                (start + offset).storeBytes(of: 0, as: UInt8.self)
                offset += pageSize
            }
        }
        return failure.value
    }

    /// `memcpy` of non-overlapping memory, split over `cores` when large.
    static func copy(to destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer, count: Int, cores: Int) {
        guard count >= parallelBytes, cores > 1 else {
            memcpy(destination, source, count)
            return
        }
        split(count, cores: cores, alignment: CPUBackend.alignment) { range in
            memcpy(destination + range.lowerBound, source + range.lowerBound, range.count)
        }
    }

    /// `memmove`: split over `cores` when large and the two ranges do not overlap.
    static func move(to destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer, count: Int, cores: Int) {
        let to = UInt(bitPattern: destination), from = UInt(bitPattern: source), n = UInt(count)
        if to + n <= from || from + n <= to {
            copy(to: destination, from: source, count: count, cores: cores)
        } else {
            memmove(destination, source, count)
        }
    }

    /// Fills `count` bytes with `pattern` repeated (the count is a multiple of the pattern's length), split over
    /// `cores` when large. A pattern of one repeated byte is a `memset`; a longer one is written once and then
    /// doubled with `memcpy` inside each slice.
    static func fill(_ destination: UnsafeMutableRawPointer, count: Int, pattern: [UInt8], cores: Int) {
        guard count > 0, let first = pattern.first else { return }
        let uniform = pattern.allSatisfy { $0 == first }
        let unit = uniform ? 1 : pattern.count
        let parts = count >= parallelBytes && cores > 1 ? cores : 1
        let body: (Range<Int>) -> Void = { range in
            let start = destination + range.lowerBound
            if uniform {
                memset(start, Int32(first), range.count)
                return
            }
            _ = pattern.withUnsafeBytes { p in memcpy(start, p.baseAddress!, min(unit, range.count)) }
            var filled = min(unit, range.count)
            while filled < range.count {
                let step = min(filled, range.count - filled)
                memcpy(start + filled, start, step)
                filled += step
            }
        }
        if parts == 1 {
            body(0..<count)
        } else {
            // Slice boundaries are multiples of the pattern's length and of a cache line.
            split(count, cores: parts, alignment: unit * CPUBackend.alignment, body)
        }
    }

    /// Runs `body` over about `cores` contiguous slices of `0 ..< count`, each starting at a multiple of `alignment`
    /// and at least `sliceBytes` long (one slice when `count` is small), concurrently.
    private static func split(_ count: Int, cores: Int, alignment: Int, _ body: (Range<Int>) -> Void) {
        let parts = max(1, min(cores, count / sliceBytes))
        guard parts > 1 else {
            body(0..<count)
            return
        }
        // concurrentPerform returns only once every iteration has run, so `body` does not outlive this call; the
        // iterations touch disjoint slices, so calling it concurrently is safe.
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let lower = part == 0 ? 0 : min(count, count / parts * part / alignment * alignment)
            let upper = part == parts - 1 ? count : min(count, count / parts * (part + 1) / alignment * alignment)
            if lower < upper { body(lower..<upper) }
        }
    }
}

/// An `errno` value that refused an allocation.
struct Errno: Error, Equatable {
    let code: Int32
}

/// The first non-zero status reported by concurrent workers.
private final class AtomicStatus: Sendable {
    private let storage = Mutex<Int32>(0)
    func record(_ status: Int32) { storage.withLock { if $0 == 0 { $0 = status } } }
    var value: Int32 { storage.withLock { $0 } }
}
