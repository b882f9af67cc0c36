/// The memory checks of `DeviceChecks`: views, asynchronous copies, out-of-memory and misaligned views.
extension DeviceChecks {
    /// Vector add of two typed views into a third, all at non-zero element offsets of sentinel-filled buffers.
    static func views(on device: Device) async throws -> (SelfTest.Check.Status, String) {
        let align = alignedElements(Float.self, on: device)
        let n = 4099
        let offsetA = align * 3, offsetB = align, offsetC = align * 2
        let total = n + align * 5 + 7
        let inputA = (0..<total).map { i in i >= offsetA && i < offsetA + n ? Float.sample(i, 1) : sentinel }
        let inputB = (0..<total).map { i in i >= offsetB && i < offsetB + n ? Float.sample(i, 2) : sentinel }
        let a = try device.makeBuffer(copying: inputA)
        let b = try device.makeBuffer(copying: inputB)
        let c = try device.makeBuffer(of: Float.self, count: total)
        try await c.fill(sentinel)
        let kernel = try device.compile(
            ReferenceKernels.vectorAdd(Float.self, language: ReferenceKernels.language(for: device)))
        try await device.launch(
            kernel, .covering(n, groupSize: min(128, device.info.maxGroupItems)),
            arguments: [
                .buffer(try a.view(offset: offsetA, count: n)), .buffer(try b.view(offset: offsetB, count: n)),
                .buffer(try c.view(offset: offsetC, count: n)), .int32(Int32(n)),
            ])
        let out = try c.toArray()
        var wrong = 0, clobbered = 0
        for i in 0..<total {
            if i >= offsetC && i < offsetC + n {
                let k = i - offsetC
                if out[i] != inputA[offsetA + k] + inputB[offsetB + k] { wrong += 1 }
            } else if out[i].bitPattern != sentinel.bitPattern {
                clobbered += 1
            }
        }
        return (
            wrong == 0 && clobbered == 0 ? .passed : .failed,
            "\(n) float32 elements through views at element offsets \(offsetA), \(offsetB), \(offsetC) of \(total)-element buffers: \(wrong) wrong sums, \(total - n - clobbered) of \(total - n) elements outside the output view kept the sentinel"
        )
    }

    /// `enqueueCopy` host to device and back with offsets, for pinned and pageable host memory, and from an array;
    /// destinations are sentinel-filled and every byte outside the copied range must keep the sentinel.
    static func asyncCopies(on device: Device) async throws -> (SelfTest.Check.Status, String) {
        let n = 1 << 16
        let hostOffset = 10, deviceOffset = 50, backOffset = 3, count = n - 20
        let values = (0..<n).map { UInt32(truncatingIfNeeded: $0 &* 2_654_435_761 % 1_000_003) }
        var failures: [String] = []
        var parts: [String] = []
        for pinned in [true, false] {
            let label = pinned ? "pinned" : "pageable"
            let host = try device.makeHostBuffer(byteCount: n * 4, pinned: pinned)
            try host.write(values)
            let buffer = try device.makeBuffer(of: UInt32.self, count: n + 100)
            try await buffer.fill(sentinelWord)
            let clock = ContinuousClock()
            let start = clock.now
            try await buffer.enqueueCopy(from: host, hostOffset: hostOffset, toOffset: deviceOffset, count: count)
                .wait()
            let up = clock.now - start
            let onDevice = try buffer.toArray()
            var wrong = 0, clobbered = 0
            for i in 0..<onDevice.count {
                if i >= deviceOffset && i < deviceOffset + count {
                    if onDevice[i] != values[hostOffset + i - deviceOffset] { wrong += 1 }
                } else if onDevice[i] != sentinelWord {
                    clobbered += 1
                }
            }
            let back = try device.makeHostBuffer(byteCount: n * 4, pinned: pinned)
            try back.write([UInt32](repeating: sentinelWord, count: n))
            let downStart = clock.now
            try await buffer.enqueueCopy(to: back, hostOffset: backOffset, fromOffset: deviceOffset, count: count)
                .wait()
            let down = clock.now - downStart
            let onHost = try back.read(UInt32.self, count: n)
            var wrongBack = 0, clobberedBack = 0
            for i in 0..<n {
                if i >= backOffset && i < backOffset + count {
                    if onHost[i] != values[hostOffset + i - backOffset] { wrongBack += 1 }
                } else if onHost[i] != sentinelWord {
                    clobberedBack += 1
                }
            }
            if wrong + clobbered + wrongBack + clobberedBack > 0 {
                failures.append(
                    "\(label): \(wrong) wrong and \(clobbered) clobbered on the device, \(wrongBack) wrong and \(clobberedBack) clobbered on the host"
                )
            }
            parts.append(
                "\(label) (host buffer pinned: \(host.isPinned)): \(count) words up in \(ms(up)), down in \(ms(down))")
        }
        // From an array: the runtime stages it in host memory for transfers itself.
        let array = (0..<1000).map { UInt32($0) &* 3 &+ 1 }
        let target = try device.makeBuffer(of: UInt32.self, count: 1100)
        try await target.fill(sentinelWord)
        try await target.enqueueCopy(from: array, toOffset: 37).wait()
        let got = try target.toArray()
        var wrongArray = 0, clobberedArray = 0
        for i in 0..<got.count {
            if i >= 37 && i < 1037 {
                if got[i] != array[i - 37] { wrongArray += 1 }
            } else if got[i] != sentinelWord {
                clobberedArray += 1
            }
        }
        if wrongArray + clobberedArray > 0 {
            failures.append("array: \(wrongArray) wrong, \(clobberedArray) clobbered")
        }
        parts.append("1000 words from an array at element offset 37")
        let summary =
            "host offset \(hostOffset), device offset \(deviceOffset), back to host offset \(backOffset); "
            + parts.joined(separator: "; ")
        return failures.isEmpty
            ? (.passed, summary + "; every copied word right, every word outside kept the sentinel")
            : (.failed, failures.joined(separator: "; ") + " (\(summary))")
    }

    /// A request of about twice the device's memory is refused with `outOfMemory` and changes nothing in the pool.
    static func outOfMemory(on device: Device) throws -> (SelfTest.Check.Status, String) {
        let total = device.info.totalMemory
        let (doubled, overflow) = total.multipliedReportingOverflow(by: 2)
        let request = overflow ? Int.max : doubled
        // The pool refuses a request above its limit before any driver call. Below the limit the request reaches the
        // backend: on the CPU backend that is `posix_memalign`, which with memory overcommit may hand out twice the
        // host memory (to be killed by the kernel's OOM killer when touched) instead of refusing.
        if device.id.backend == .cpu, request <= device.pool.limit {
            return (
                .notApplicable,
                "the pool limit \(device.pool.limit) bytes allows a request of \(request) bytes, which on the CPU backend would reach posix_memalign and could reserve twice the host memory instead of failing"
            )
        }
        // Free cached segments first, so a trim triggered by the refusal cannot change what is reserved.
        device.pool.trim()
        let before = device.pool.statistics
        do {
            _ = try device.makeRawBuffer(byteCount: request)
            return (.failed, "allocating \(request) bytes (2 x \(total) bytes of device memory) succeeded")
        } catch {
            guard case let .outOfMemory(_, requested, _, _, limit, detail) = error else {
                return (.failed, "expected outOfMemory for \(request) bytes, got: \(error)")
            }
            let after = device.pool.statistics
            let small = try device.makeBuffer(copying: [1, 2, 3, 4] as [Float])
            let readBack = try small.toArray()
            let leaked = after.bytesInUse != before.bytesInUse || after.bytesReserved != before.bytesReserved
            let summary =
                "requested \(requested) bytes (2 x \(total)), refused against limit \(limit) (\(detail)); pool in use \(before.bytesInUse) -> \(after.bytesInUse) bytes, reserved \(before.bytesReserved) -> \(after.bytesReserved) bytes; a 16-byte allocation afterwards read back \(readBack)"
            return (!leaked && readBack == [1, 2, 3, 4] ? .passed : .failed, summary)
        }
    }

    /// A `Buffer<Float>` argument at byte offset 2 of its allocation, passed to the catalog's `vector_add` (whose
    /// parameters declare 4-byte elements), must be refused with `invalidArgument` before anything reaches the device.
    /// The launch is given `n = 0`, so that a runtime which accepted the view could not fault the device with it.
    static func misalignedView(on device: Device) async throws -> (SelfTest.Check.Status, String) {
        let kernel = try KernelCatalog().kernel("vector_add", on: device)
        let elements = 16
        let raw = try device.makeRawBuffer(byteCount: elements * 4 + 64)
        let aligned = try device.makeBuffer(of: Float.self, count: elements)
        let misaligned: Buffer<Float>
        do {
            misaligned = try Buffer<Float>(try raw.view(offset: 2, byteCount: elements * 4))
        } catch {
            guard case .invalidArgument = error else {
                return (.failed, "making a view at byte offset 2: expected invalidArgument, got: \(error)")
            }
            return (
                .passed,
                "the view itself was refused (view alignment \(device.info.capabilities.viewOffsetAlignment) bytes): \(error)"
            )
        }
        let launch = Launch(groups: Extent3(1), groupSize: Extent3(min(32, device.info.maxGroupItems)))
        let completion: Completion
        do {
            completion = try device.enqueue(
                kernel, launch,
                arguments: [.buffer(misaligned), .buffer(aligned), .buffer(aligned), .int32(0)])
        } catch {
            guard case .invalidArgument = error else {
                return (.failed, "expected invalidArgument from enqueue, got: \(error)")
            }
            return (.passed, "enqueue refused the float argument at byte offset 2: \(error)")
        }
        try await completion.wait()
        return (
            .failed,
            "enqueue accepted a float32 buffer argument at byte offset 2 (address 0x\(String(misaligned.raw.address, radix: 16)), 4-byte elements declared); the launch ran with n = 0"
        )
    }
}
