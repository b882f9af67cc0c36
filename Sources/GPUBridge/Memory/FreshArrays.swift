#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Arrays made for large values that are written once, right after they are made: the bytes of an actor call as they
/// are encoded, assembled from the wire and decoded.
///
/// A large array is usually fresh memory (glibc maps every allocation over 32 MiB on its own, and unmaps it when it is
/// freed), so its first write faults in every page. On Linux an array of `hugePageBytes` or more is advised as
/// transparent huge pages (`MADV_HUGEPAGE` over the 2 MiB-aligned part of it) before anything is written to it: the
/// first write then faults once per 2 MiB instead of once per 4 KiB. Pages the process already had (a block glibc
/// reused) are not affected. On the measured 2-core VM a 64 MiB actor-call round trip over TCP took 200 to 295 ms
/// with the advice and 340 to 520 ms without it, in alternating runs (docs/PERFORMANCE.md, "Large values on the
/// wire"). The advice is only advice: a kernel without transparent huge pages, or one set to `never`, ignores it and
/// the array is made as before. `GPUBRIDGE_HUGE_PAGES=off` turns it off.
///
/// Stateless; any thread may call it. It costs one `madvise` system call per large array and nothing for a small one.
package enum FreshArrays {
    /// Arrays of at least this many bytes are advised.
    package static let hugePageBytes = 4 << 20
    /// False when `GPUBRIDGE_HUGE_PAGES=off` was set when the process first made a large array.
    package static let hugePagesAdvised: Bool = {
        guard let raw = getenv("GPUBRIDGE_HUGE_PAGES") else { return true }
        return String(cString: raw) != "off"
    }()

    /// An array of `count` elements that `initialize` writes in full (every byte of the buffer it is given).
    package static func make<E: BitwiseCopyable>(
        _: E.Type = E.self, count: Int, initialize: (UnsafeMutableRawBufferPointer) throws -> Void
    ) rethrows -> [E] {
        try [E](unsafeUninitializedCapacity: count) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            if raw.count >= hugePageBytes, hugePagesAdvised { adviseHugePages(raw) }
            try initialize(raw)
            initialized = count
        }
    }

    /// An array of `count` bytes whose contents are undefined until written, for a value that arrives in pieces and
    /// is written in full before anything reads it (`TCPAssembly`). A large one is a fresh mapping, so its pages are
    /// committed only as the pieces are written; it is advised as huge pages like `make`'s.
    package static func reserve(count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            if raw.count >= hugePageBytes, hugePagesAdvised { adviseHugePages(raw) }
            initialized = count
        }
    }

    /// One array of `count` bytes: the parts `parts` hands to its callback, copied in order. The parts must hold
    /// `count` bytes together; bytes past `count` are not copied, and a shortfall is left zero.
    package static func joining(
        count: Int, _ parts: ((UnsafeRawBufferPointer) -> Void) -> Void
    ) -> [UInt8] {
        make(UInt8.self, count: count) { out in
            var at = 0
            parts { bytes in
                let n = min(bytes.count, out.count - at)
                if n > 0, let base = bytes.baseAddress { (out.baseAddress! + at).copyMemory(from: base, byteCount: n) }
                at += n
            }
            if at < out.count {
                (out.baseAddress! + at).initializeMemory(as: UInt8.self, repeating: 0, count: out.count - at)
            }
        }
    }

    /// Asks the kernel for transparent huge pages over the 2 MiB-aligned part of `region`. Ignores a refusal: the
    /// region is usable either way.
    private static func adviseHugePages(_ region: UnsafeMutableRawBufferPointer) {
        #if os(Linux)
            guard let base = region.baseAddress else { return }
            let huge = 2 << 20
            let start = (Int(bitPattern: base) + huge - 1) / huge * huge
            let end = (Int(bitPattern: base) + region.count) / huge * huge
            guard end - start >= huge, let pointer = UnsafeMutableRawPointer(bitPattern: start) else { return }
            _ = madvise(pointer, end - start, MADV_HUGEPAGE)
        #endif
    }
}
