#if SwiftKernels
    import GPUBridge
    import GPUBridgeKernels

    // Kernels with shared arrays and barriers: the CPU backend runs their bodies split at the barriers.

    /// Each group's sum: a shared-memory tree reduction (groups of 256). `lid` is kept per work-item across the
    /// barriers; `span` is the same in every work-item and runs once per group on the CPU.
    @GPUKernel
    func groupSums(_ item: WorkItem, input: DeviceArray<Float>, sums: MutableDeviceArray<Float>, n: Int32) {
        let tile = SharedArray<Float>(count: 256)
        let lid = item.localID(0)
        let gid = item.globalID(0)
        tile[lid] = gid < n ? input[gid] : 0
        item.barrier()
        var span = item.localSize(0) / 2
        while span > 0 {
            if lid < span { tile[lid] += tile[lid + span] }
            item.barrier()
            span /= 2
        }
        if lid == 0 { sums[item.groupID(0)] = tile[0] }
    }

    /// Each group's inclusive prefix sum (Hillis and Steele, groups of 128): a local assigned under `if` and read
    /// after the next barrier.
    @GPUKernel
    func groupScan(_ item: WorkItem, values: MutableDeviceArray<Int32>, n: Int32) {
        let tile = SharedArray<Int32>(count: 128)
        let lid = item.localID(0)
        let gid = item.globalID(0)
        tile[lid] = gid < n ? values[gid] : 0
        item.barrier()
        var offset: Int32 = 1
        while offset < item.localSize(0) {
            var add: Int32 = 0
            if lid >= offset { add = tile[lid - offset] }
            item.barrier()
            tile[lid] += add
            item.barrier()
            offset *= 2
        }
        if gid < n { values[gid] = tile[lid] }
    }

    /// Rotates each group's elements left by `rounds` places, one place per round of a `for` loop with barriers
    /// (groups of 64).
    @GPUKernel
    func groupRotate(_ item: WorkItem, values: MutableDeviceArray<Float>, rounds: Int32) {
        let tile = SharedArray<Float>(count: 64)
        let lid = item.localID(0)
        let size = item.localSize(0)
        tile[lid] = values[item.globalID(0)]
        for _ in 0..<rounds {
            item.barrier()
            let next = tile[(lid + 1) % size]
            item.barrier()
            tile[lid] = next
        }
        item.barrier()
        values[item.globalID(0)] = tile[lid]
    }

    /// Control flow the same in every work-item of a group, around barriers (groups of 64): groups at or past
    /// `active` return at once; even groups reverse their elements through shared memory and odd ones rotate them
    /// left by one (an `if`/`else` with a barrier in each branch); then each element gains 1 per round of a loop with
    /// a barrier that a `break` ends at round `stop`.
    @GPUKernel
    func groupBranches(_ item: WorkItem, values: MutableDeviceArray<Float>, active: Int32, rounds: Int32, stop: Int32) {
        let tile = SharedArray<Float>(count: 64)
        let group = item.groupID(0)
        if group >= active { return }
        let lid = item.localID(0)
        let size = item.localSize(0)
        let gid = item.globalID(0)
        tile[lid] = values[gid]
        item.barrier()
        if group % 2 == 0 {
            let mirrored = tile[size - 1 - lid]
            item.barrier()
            tile[lid] = mirrored
        } else {
            let next = tile[(lid + 1) % size]
            item.barrier()
            tile[lid] = next
        }
        item.barrier()
        for r in 0..<rounds {
            if r == stop { break }
            tile[lid] += 1
            item.barrier()
        }
        values[gid] = tile[lid]
    }
#endif
