/// The device checks run by `gpubridge check`: views, asynchronous copies with offsets, a thousand launches in flight,
/// compiler errors, out-of-memory, large shared memory, misaligned views and device faults, on any backend.
///
/// Each check does real work through the public API and compares with a host result or with the exact error expected;
/// a check that does not apply to the device's backend says why (`.notApplicable`); a thrown error makes the check
/// `.failed` with the error's text, and the next check still runs.
///
/// Ownership: stateless; every buffer, host buffer and kernel a check makes belongs to that check and is released when
/// it ends, and the caller owns the device and the returned results. Threading: any task may call `run`, on any number
/// of devices at once; the checks on one device run one after another. The out-of-memory and leak comparisons read the
/// device's pool statistics, so other work on the same device during the run can make them fail. Cost: under 1 MiB of
/// device memory in use at a time (the pool reserves small blocks in 2 MiB segments) and 512 KiB of host memory, 1 000
/// small launches and at most six compilations; about 0.1 s on the CPU backend and 0.4 s on PoCL on a 2-core machine.
public enum DeviceChecks {
    /// The checks, in the order they run. The raw value is the name a check reports and `gpubridge check --only` takes.
    public enum Name: String, Sendable, Hashable, CaseIterable, Codable {
        /// Typed views at non-zero offsets as kernel arguments; elements outside the views keep their sentinel.
        case views
        /// `enqueueCopy` both ways with pinned and pageable host memory and offsets, and from an array.
        case asyncCopies = "async-copies"
        /// 1 000 launches enqueued before any is awaited, each writing its own values.
        case concurrentLaunches = "concurrent-launches"
        /// A kernel with a syntax error fails with `compilationFailed` and the compiler's log.
        case compileError = "compile-error"
        /// A request of twice the device's memory fails with `outOfMemory` and leaves the pool as it was.
        case outOfMemory = "out-of-memory"
        /// 16 KiB of static plus 40 KiB of dynamic shared memory in one CUDA block (more than the default 48 KiB).
        case largeSharedMemory = "large-shared-memory"
        /// A float buffer argument at byte offset 2 is refused before launch.
        case misalignedView = "misaligned-view"
        /// A misaligned store on the device is reported as the device lost, for that launch and the next.
        case deviceLost = "device-lost"
    }

    /// Runs the checks on `device` in `Name` order, reporting each to `progress` as it ends.
    ///
    /// - Parameters:
    ///   - includeDestructive: runs `device-lost`, which on CUDA makes the device fault on purpose: the fault destroys
    ///     the device's CUDA context, so every later operation on that device in this process fails. It therefore
    ///     runs last, and only when asked; otherwise it is reported as not applicable with that reason.
    ///   - only: the checks to run (nil: all of them); the others are not run and not reported.
    public static func run(
        on device: Device, includeDestructive: Bool = false, only: Set<Name>? = nil,
        progress: @Sendable (SelfTest.Check) -> Void = { _ in }
    ) async -> [SelfTest.Check] {
        var checks: [SelfTest.Check] = []
        func record(_ name: Name, _ body: () async throws -> (SelfTest.Check.Status, String)) async {
            guard only?.contains(name) ?? true else { return }
            let clock = ContinuousClock()
            let start = clock.now
            let check: SelfTest.Check
            do {
                let (status, detail) = try await body()
                check = SelfTest.Check(name: name.rawValue, status: status, detail: detail, duration: clock.now - start)
            } catch {
                check = SelfTest.Check(
                    name: name.rawValue, status: .failed, detail: "\(error)", duration: clock.now - start)
            }
            progress(check)
            checks.append(check)
        }
        await record(.views) { try await views(on: device) }
        await record(.asyncCopies) { try await asyncCopies(on: device) }
        await record(.concurrentLaunches) { try await concurrentLaunches(on: device) }
        await record(.compileError) { try compileError(on: device) }
        await record(.outOfMemory) { try outOfMemory(on: device) }
        await record(.largeSharedMemory) { try await largeSharedMemory(on: device) }
        await record(.misalignedView) { try await misalignedView(on: device) }
        await record(.deviceLost) {
            guard includeDestructive else {
                return (
                    .notApplicable,
                    "not asked for: on CUDA it faults the device on purpose, which destroys the device's context for the rest of the process (gpubridge check --destructive runs it)"
                )
            }
            return try await deviceLost(on: device)
        }
        return checks
    }

    /// A float no check writes on purpose; compared bit for bit.
    static let sentinel: Float = -12_345.5
    /// A 32-bit sentinel for the copy checks.
    static let sentinelWord: UInt32 = 0xDEAD_BEEF

    /// Elements of `Element` per view alignment unit: view offsets are multiples of this on `device`.
    static func alignedElements<Element>(_ type: Element.Type, on device: Device) -> Int {
        let stride = MemoryLayout<Element>.stride
        let alignment = max(1, device.info.capabilities.viewOffsetAlignment)
        return max(1, (alignment + stride - 1) / stride)
    }

    /// Whether `error` reports the device as lost (`device <id> lost: <reason>`).
    static func isDeviceLost(_ error: any Error) -> Bool {
        guard case .deviceLost = error as? GPUBridgeError else { return false }
        return true
    }

    /// The first line of `text`, at most `limit` characters.
    static func firstLine(_ text: String, limit: Int = 160) -> String {
        let line = text.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? ""
        return line.count > limit ? String(line.prefix(limit)) + "…" : line
    }

    /// Milliseconds with two decimals, for details.
    static func ms(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let value = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction) ms"
    }
}
