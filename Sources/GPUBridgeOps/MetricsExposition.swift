import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import Prometheus

extension OpsSources {
    /// `/metrics`: Prometheus' text format (0.0.4). First the live figures, read from the devices, pools, broker,
    /// actor system and node at this moment (gauges, and the device counters as `_total` counters); then, when the
    /// process bootstrapped Prometheus (`registry`), every swift-metrics family (launch latency, requests, cluster
    /// calls). In cluster mode every live series carries a `node` label.
    ///
    /// Cost: one short-lived registry per scrape, a few locks per device; no driver call.
    public func metricsText() -> String {
        let r = PrometheusCollectorRegistry()
        let nodeLabel: [(String, String)] = node.map { [("node", $0.id.description)] } ?? []
        // The whole name in `metricName`: an empty unit adds no suffix.
        func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Int) {
            r.makeGauge(descriptor: descriptor(name, help), labels: labels + nodeLabel).set(Double(value))
        }
        func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Int) {
            r.makeCounter(descriptor: descriptor(name, help), labels: labels + nodeLabel).increment(by: Int64(value))
        }
        func secondsCounter(_ name: String, _ help: String, _ labels: [(String, String)], _ nanoseconds: Int) {
            r.makeCounter(descriptor: descriptor(name, help), labels: labels + nodeLabel).increment(
                by: Double(nanoseconds) / 1e9)
        }
        for report in deviceReports() {
            let d = [("device", report.id)]
            gauge(
                "gpubridge_device_info", "A device of this process (always 1).",
                d + [("name", report.name), ("backend", report.backend)], 1)
            gauge(
                "gpubridge_device_lost", "1 when the device's backend reported it lost.", d, report.lost == nil ? 0 : 1)
            gauge("gpubridge_device_memory_total_bytes", "The device's memory.", d, report.totalMemory)
            gauge("gpubridge_pool_in_use_bytes", "Pool bytes handed out.", d, report.pool.bytesInUse)
            gauge("gpubridge_pool_cached_bytes", "Pool bytes reserved and free for reuse.", d, report.pool.bytesCached)
            gauge("gpubridge_pool_reserved_bytes", "Pool bytes reserved from the driver.", d, report.pool.bytesReserved)
            gauge("gpubridge_pool_peak_in_use_bytes", "Highest pool bytes in use.", d, report.pool.peakBytesInUse)
            gauge("gpubridge_device_kernels_loaded", "Kernels loaded on the device.", d, report.kernels.count)
            let c = report.counters
            counter("gpubridge_device_launches_total", "Kernel launches issued.", d, c.launches)
            counter("gpubridge_device_copies_total", "Copies and fills issued.", d, c.copies)
            counter("gpubridge_device_copied_bytes_total", "Bytes moved by copies and fills.", d, c.bytesCopied)
            counter("gpubridge_device_compiles_total", "Kernel compilations (cache misses).", d, c.compiles)
            counter("gpubridge_device_allocations_total", "Native allocations.", d, c.allocations)
            counter("gpubridge_device_frees_total", "Native allocations released.", d, c.frees)
            counter(
                "gpubridge_device_launches_awaited_total", "Launches awaited to their end (Device.launch).", d,
                c.launchesAwaited)
            secondsCounter(
                "gpubridge_device_launch_seconds_total", "Host time of the awaited launches, enqueue to end.", d,
                c.launchNanoseconds)
            let b = report.broker
            gauge("gpubridge_broker_requests_running", "Requests running on the device.", d, b.running)
            gauge("gpubridge_broker_requests_waiting", "Requests waiting for a slot on the device.", d, b.waiting)
            counter("gpubridge_broker_requests_succeeded_total", "Requests the device completed.", d, b.succeeded)
            counter("gpubridge_broker_requests_failed_total", "Requests that failed on the device.", d, b.failed)
            for state in [DeviceBroker.Circuit.closed, .open, .halfOpen, .lost] {
                gauge(
                    "gpubridge_broker_circuit", "1 for the device's circuit state, 0 for the others.",
                    d + [("state", state.rawValue)], b.circuit == state ? 1 : 0)
            }
        }
        // The kernel caches (devices of one bridge usually share one): hits by tier, and misses (compiles).
        var caches: [ObjectIdentifier: KernelCache] = [:]
        for device in bridge.devices { caches[ObjectIdentifier(device.cache)] = device.cache }
        var loaded = 0, memory = 0, disk = 0, misses = 0
        for each in caches.values {
            let s = each.statistics
            loaded += s.loadedHits
            memory += s.memoryHits
            disk += s.diskHits
            misses += s.misses
        }
        for (tier, hits) in [("loaded", loaded), ("memory", memory), ("disk", disk)] {
            counter(
                "gpubridge_kernel_cache_hits_total",
                "Kernel loads served by a cache: loaded on the device, a binary in memory, or on disk.",
                [("tier", tier)], hits)
        }
        counter("gpubridge_kernel_cache_misses_total", "Kernel loads that ran the compiler.", [], misses)
        if let actors = actorsReport() {
            gauge("gpubridge_actors_active", "Actor instances active in this process.", [], actors.active)
            var byPhase: [[String]: Int] = [:]
            var calls: [String: Int] = [:], failed: [String: Int] = [:], seconds: [String: Double] = [:]
            for activation in actors.actors {
                byPhase[[activation.type, activation.phase], default: 0] += 1
                calls[activation.type, default: 0] += activation.calls
                failed[activation.type, default: 0] += activation.failedCalls
                seconds[activation.type, default: 0] += activation.callSeconds
            }
            var placed: [[String]: Int] = [:]
            for activation in actors.actors where activation.phase == "active" {
                placed[[activation.type, activation.device ?? "none"], default: 0] += 1
            }
            for (key, count) in placed.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                gauge(
                    "gpubridge_actors_placed",
                    "Active actors by type and the device they live on (none: they hold no device memory).",
                    [("type", key[0]), ("device", key[1])], count)
            }
            for (key, count) in byPhase.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                gauge(
                    "gpubridge_actors", "Actors of this process that have activated, by type and phase.",
                    [("type", key[0]), ("phase", key[1])], count)
            }
            // Durable actors' journals, summed by type.
            var journals: [String: [Int]] = [:]
            for activation in actors.actors {
                guard let j = activation.journal else { continue }
                let figures = [j.appends, j.entriesAppended, j.entriesSinceSnapshot, j.snapshots, j.duplicateCalls]
                journals[activation.type] = zip(journals[activation.type] ?? [0, 0, 0, 0, 0], figures).map { $0 + $1 }
            }
            for (type, f) in journals.sorted(by: { $0.key < $1.key }) {
                let t = [("type", type)]
                counter("gpubridge_actor_journal_appends_total", "Journal append transactions, by actor type.", t, f[0])
                counter("gpubridge_actor_journal_entries_total", "Mutations journaled, by actor type.", t, f[1])
                gauge(
                    "gpubridge_actor_journal_entries_since_snapshot", "Journal entries not yet in a snapshot.", t, f[2])
                counter("gpubridge_actor_snapshots_total", "Snapshots committed, by actor type.", t, f[3])
                counter(
                    "gpubridge_actor_duplicate_calls_total", "Retried calls recognised and not applied again.", t, f[4])
            }
            for (type, count) in calls.sorted(by: { $0.key < $1.key }) {
                counter(
                    "gpubridge_actor_calls_total", "Calls run by this process's actors, by type.", [("type", type)],
                    count)
                counter(
                    "gpubridge_actor_call_failures_total", "Calls of this process's actors that threw, by type.",
                    [("type", type)], failed[type] ?? 0)
                r.makeCounter(
                    descriptor: descriptor(
                        "gpubridge_actor_call_seconds_total", "Time of the calls that ended, by actor type."),
                    labels: [("type", type)] + nodeLabel
                ).increment(by: seconds[type] ?? 0)
            }
        }
        if let cluster = clusterReport() {
            var byStatus: [String: Int] = [:]
            for member in cluster.members { byStatus[member.status.rawValue, default: 0] += 1 }
            for (status, count) in byStatus.sorted(by: { $0.key < $1.key }) {
                gauge(
                    "gpubridge_cluster_members", "Rows of the membership table as this node last read it, by status.",
                    [("status", status)], count)
            }
        }
        if let errors {
            for (level, count) in errors.report(limit: 0).counts.sorted(by: { $0.key < $1.key }) {
                counter(
                    "gpubridge_log_messages_total", "Warnings and errors this process logged, by level.",
                    [("level", level)], count)
            }
        }
        var bytes: [UInt8] = []
        r.emit(into: &bytes)
        registry?.emit(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}
