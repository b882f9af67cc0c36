#if HTTP
    import Foundation
    import GPUBridge
    import GPUBridgeActors
    import GPUBridgeOps
    import GPUBridgeTestSupport
    import Hummingbird
    import Logging
    import HummingbirdTesting
    import Testing

    @Suite("Operations endpoint: metrics, health probes, JSON API, refusals")
    struct OpsRouteTests {
        func bridge(_ backends: [any DeviceBackend] = [CPUBackend()]) throws -> Bridge {
            var options = BridgeOptions()
            options.cacheDirectory = nil
            return try Bridge(options: options, backends: backends)
        }

        func app(_ sources: OpsSources) -> some ApplicationProtocol { Application(router: OpsRouter.make(sources)) }

        /// The value of the one series `series` (name and labels exactly as written) in Prometheus text.
        func sample(_ text: String, _ series: String) -> Double? {
            let values = text.split(separator: "\n").compactMap { line -> Double? in
                guard line.hasPrefix(series + " ") else { return nil }
                return Double(line.dropFirst(series.count + 1))
            }
            return values.count == 1 ? values[0] : nil
        }

        @Test("/metrics has every device's live figures, each series once, every family typed")
        func metrics() async throws {
            let bridge = try bridge()
            let device = bridge.devices[0]
            let held = try device.makeBuffer(copying: [Float](repeating: 1, count: 1 << 18))
            _ = try await bridge.run(Operations.scale, (alpha: 2, x: [1, 2, 3]))
            let pool = device.pool.statistics, counters = device.counters.snapshot
            #expect(pool.bytesInUse >= 1 << 20)
            try await app(OpsSources(bridge: bridge)).test(.router) { client in
                try await client.execute(uri: "/metrics", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
                    let text = String(buffer: response.body)
                    let d = #"device="cpu:0""#
                    #expect(sample(text, "gpubridge_pool_in_use_bytes{\(d)}") == Double(pool.bytesInUse))
                    #expect(sample(text, "gpubridge_pool_reserved_bytes{\(d)}") == Double(pool.bytesReserved))
                    #expect(
                        sample(text, "gpubridge_device_memory_total_bytes{\(d)}") == Double(device.info.totalMemory))
                    #expect(sample(text, "gpubridge_device_launches_total{\(d)}") == Double(counters.launches))
                    let cache = device.cache.statistics
                    #expect(sample(text, "gpubridge_kernel_cache_misses_total") == Double(cache.misses))
                    #expect(
                        sample(text, #"gpubridge_kernel_cache_hits_total{tier="loaded"}"#) == Double(cache.loadedHits))
                    #expect(
                        sample(text, "gpubridge_device_launches_awaited_total{\(d)}")
                            == Double(counters.launchesAwaited))
                    #expect(counters.launchesAwaited >= 1)
                    let seconds = try #require(sample(text, "gpubridge_device_launch_seconds_total{\(d)}"))
                    #expect(abs(seconds - Double(counters.launchNanoseconds) / 1e9) < 1e-9)
                    #expect(seconds > 0)
                    #expect(counters.launches >= 1)
                    #expect(sample(text, "gpubridge_broker_requests_succeeded_total{\(d)}") == 1)
                    #expect(sample(text, #"gpubridge_broker_circuit{\#(d),state="closed"}"#) == 1)
                    #expect(sample(text, #"gpubridge_broker_circuit{\#(d),state="open"}"#) == 0)
                    #expect(
                        sample(text, #"gpubridge_device_info{\#(d),name="\#(device.info.name)",backend="cpu"}"#) == 1)
                    // Exposition format: every sample's family is declared once with a TYPE line, no series repeats.
                    let lines = text.split(separator: "\n")
                    let series = lines.filter { !$0.hasPrefix("#") }.map {
                        $0.split(separator: " ").dropLast().joined()
                    }
                    #expect(Set(series).count == series.count)
                    let typed = Set(lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] })
                    for s in series {
                        let family = s.split(separator: "{")[0]
                        #expect(typed.contains(family), "\(family) has no TYPE line")
                    }
                }
            }
            _ = held
        }

        @Test("/health/live answers; /health/ready is 200 with usable devices and 503 when every device is lost")
        func health() async throws {
            let failing = FaultInjectingBackend(wrapping: CPUBackend())
            let sources = OpsSources(bridge: try bridge([failing]))
            try await app(sources).test(.router) { client in
                try await client.execute(uri: "/health/live", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(String(buffer: response.body) == #"{"status":"live"}"#)
                }
                try await client.execute(uri: "/health/ready", method: .get) { response in
                    #expect(response.status == .ok)
                    let readiness = try JSONDecoder().decode(Readiness.self, from: Data(buffer: response.body))
                    #expect(readiness.ready)
                    #expect(readiness.checks.map(\.name) == ["devices"])
                    #expect(readiness.checks[0].detail == "1 of 1 device(s) usable")
                }
                failing.lose("the test ended its context")
                try await client.execute(uri: "/health/ready", method: .get) { response in
                    #expect(response.status == .serviceUnavailable)
                    let readiness = try JSONDecoder().decode(Readiness.self, from: Data(buffer: response.body))
                    #expect(!readiness.ready)
                    #expect(
                        readiness.checks[0].detail
                            == "0 of 1 device(s) usable; lost: cpu:0 (the test ended its context)")
                }
                // Liveness does not depend on the devices.
                try await client.execute(uri: "/health/live", method: .get) { #expect($0.status == .ok) }
            }
        }

        @Test("/api/v1/devices reports the pool, counters and broker state the objects hold")
        func devices() async throws {
            let bridge = try bridge([CPUBackend(ordinal: 0), CPUBackend(ordinal: 1)])
            let held = try bridge.devices[1].makeBuffer(of: Float.self, count: 4096)
            try await app(OpsSources(bridge: bridge)).test(.router) { client in
                try await client.execute(uri: "/api/v1/devices", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                    let reports = try JSONDecoder().decode([DeviceReport].self, from: Data(buffer: response.body))
                    #expect(reports.map(\.id) == ["cpu:0", "cpu:1"])
                    #expect(reports.map(\.backend) == ["cpu", "cpu"])
                    #expect(reports[0].pool.bytesInUse == 0)
                    #expect(reports[1].pool == bridge.devices[1].pool.statistics)
                    #expect(reports[1].pool.bytesInUse >= 4096 * 4)
                    #expect(reports[1].broker.circuit == .closed)
                    #expect(reports.allSatisfy { $0.lost == nil && $0.totalMemory > 0 })
                    #expect(reports.map(\.kernels) == [[], []])
                }
            }
            _ = held
        }

        @Test(
            "/api/v1/actors lists the activations; 404 without an actor system, and /api/v1/cluster outside a cluster")
        func actors() async throws {
            let bridge = try bridge()
            let system = try EmbeddedActorSystem(bridge: bridge, storage: InMemoryActorStorage())
            try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 4) }
            let started = Date()
            for key in ["b", "a", "b", "b"] {
                #expect(try await system.actor(VectorIndexActor.self, key: key).vectorCount() == 0)
            }
            #expect(
                try await system.actor(VectorIndexActor.self, key: "b").upsert(
                    ids: [1, 2], vectors: [Float](repeating: 0.5, count: 8)) == 2)
            // A query of the wrong dimension is refused: a failed call of "a".
            await #expect(throws: (any Error).self) {
                try await system.actor(VectorIndexActor.self, key: "a").query([1, 2, 3], k: 1)
            }
            try await app(OpsSources(bridge: bridge, actors: system)).test(.router) { client in
                try await client.execute(uri: "/api/v1/actors", method: .get) { response in
                    #expect(response.status == .ok)
                    let report = try OpsJSON.decoder().decode(ActorsReport.self, from: Data(buffer: response.body))
                    #expect(report.active == 2)
                    #expect(report.node == nil)
                    #expect(report.actors.map { "\($0.type)/\($0.key)" } == ["index/a", "index/b"])
                    #expect(report.actors.map(\.calls) == [2, 4])
                    #expect(report.actors.map(\.failedCalls) == [1, 0])
                    #expect(report.actors.allSatisfy { $0.callSeconds > 0 && $0.callSeconds < 60 })
                    // Durable actors report their journals: "b" journaled one upsert of two rows.
                    #expect(report.actors.map { $0.journal?.entriesAppended } == [0, 1])
                    #expect(report.actors.map { $0.journal?.entriesSinceSnapshot } == [0, 1])
                    #expect(report.actors.allSatisfy { $0.phase == "active" && $0.device == "cpu:0" })
                    #expect(report.actors.allSatisfy { $0.activations == 1 && $0.inFlight == 0 })
                    #expect(
                        report.actors.allSatisfy {
                            $0.lastCall.map { $0 >= started.addingTimeInterval(-0.001) && $0 <= Date() } == true
                        })
                }
                try await client.execute(uri: "/metrics", method: .get) { response in
                    let text = String(buffer: response.body)
                    #expect(sample(text, "gpubridge_actors_active") == 2)
                    #expect(sample(text, #"gpubridge_actors{type="index",phase="active"}"#) == 2)
                    #expect(sample(text, #"gpubridge_actors_placed{type="index",device="cpu:0"}"#) == 2)
                    #expect(sample(text, #"gpubridge_actor_calls_total{type="index"}"#) == 6)
                    #expect(sample(text, #"gpubridge_actor_journal_entries_total{type="index"}"#) == 1)
                    #expect(sample(text, #"gpubridge_actor_journal_entries_since_snapshot{type="index"}"#) == 1)
                    #expect(sample(text, #"gpubridge_actor_call_failures_total{type="index"}"#) == 1)
                    #expect((sample(text, #"gpubridge_actor_call_seconds_total{type="index"}"#) ?? 0) > 0)
                }
            }
            try await app(OpsSources(bridge: bridge)).test(.router) { client in
                for uri in ["/api/v1/actors", "/api/v1/cluster"] {
                    try await client.execute(uri: uri, method: .get) { response in
                        #expect(response.status == .notFound)
                        let body = try JSONDecoder().decode([String: String].self, from: Data(buffer: response.body))
                        #expect(body["error"]?.isEmpty == false)
                    }
                }
            }
        }

        @Test("/api/v1/errors: the logged warnings and errors, newest first, with counts by level; 404 without a log")
        func errors() async throws {
            let errors = RecentErrors(capacity: 3)
            var logger = Logger(label: "test.ops") { RecentErrors.LogHandler(label: $0, errors: errors) }
            logger.logLevel = .trace
            logger.info("not kept")
            for i in 1...4 { logger.error("failure \(i)", metadata: ["i": "\(i)", "a": "x"]) }
            logger.warning("slow")
            let sources = OpsSources(bridge: try bridge(), errors: errors)
            try await app(sources).test(.router) { client in
                try await client.execute(uri: "/api/v1/errors", method: .get) { response in
                    #expect(response.status == .ok)
                    let report = try OpsJSON.decoder().decode(
                        RecentErrors.Report.self, from: Data(buffer: response.body))
                    #expect(report.entries.map(\.message) == ["slow", "failure 4", "failure 3"])
                    #expect(report.entries.map(\.level) == ["warning", "error", "error"])
                    #expect(report.entries[1].metadata == "a=x i=4")
                    #expect(report.entries.allSatisfy { $0.source == "test.ops" })
                    #expect(report.counts == ["error": 4, "warning": 1])
                }
                try await client.execute(uri: "/api/v1/snapshot", method: .get) { response in
                    let snapshot = try OpsJSON.decoder().decode(OpsSnapshot.self, from: Data(buffer: response.body))
                    #expect(snapshot.errors?.entries.first?.message == "slow")
                }
                try await client.execute(uri: "/metrics", method: .get) { response in
                    let text = String(buffer: response.body)
                    #expect(sample(text, #"gpubridge_log_messages_total{level="error"}"#) == 4)
                    #expect(sample(text, #"gpubridge_log_messages_total{level="warning"}"#) == 1)
                }
            }
            try await app(OpsSources(bridge: try bridge())).test(.router) { client in
                try await client.execute(uri: "/api/v1/errors", method: .get) { response in
                    #expect(response.status == .notFound)
                }
            }
        }

        @Test("/ is the dashboard: self-contained HTML that follows /api/v1/events")
        func dashboard() async throws {
            try await app(OpsSources(bridge: try bridge())).test(.router) { client in
                try await client.execute(uri: "/", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                    let page = String(buffer: response.body)
                    #expect(page.hasPrefix("<!doctype html>"))
                    #expect(page.contains(#"new EventSource("api/v1/events""#))
                    // Nothing fetched from elsewhere: it must work offline.
                    for external in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
                        #expect(!page.contains(external), "the page refers to \(external)")
                    }
                }
            }
        }

        @Test("/api/v1/snapshot and /api/v1/events: one snapshot, then a stream of them; bad parameters are 400")
        func snapshotAndEvents() async throws {
            let bridge = try bridge()
            let decoder = OpsJSON.decoder()
            try await app(OpsSources(bridge: bridge)).test(.router) { client in
                try await client.execute(uri: "/api/v1/snapshot", method: .get) { response in
                    #expect(response.status == .ok)
                    let snapshot = try decoder.decode(OpsSnapshot.self, from: Data(buffer: response.body))
                    #expect(snapshot.devices.map(\.id) == ["cpu:0"])
                    #expect(snapshot.readiness.ready)
                    #expect(snapshot.actors == nil && snapshot.cluster == nil)
                }
                _ = try await bridge.run(Operations.scale, (alpha: 2, x: [1, 2, 3]))
                try await client.execute(uri: "/api/v1/events?count=3&interval_ms=100", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "text/event-stream")
                    let text = String(buffer: response.body)
                    let events = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
                    #expect(events.count == 3)
                    let snapshots = try events.map { event in
                        #expect(event.hasPrefix("data: "))
                        return try decoder.decode(OpsSnapshot.self, from: Data(event.dropFirst(6).utf8))
                    }
                    #expect(snapshots.allSatisfy { $0.devices.first?.counters.launches == 1 })
                    #expect(zip(snapshots, snapshots.dropFirst()).allSatisfy { $0.time < $1.time })
                }
                for (query, message) in [
                    ("count=0", "invalid count 0; expected an integer in 1...1000000"),
                    ("count=x", "invalid count x; expected an integer in 1...1000000"),
                    ("interval_ms=5", "invalid interval_ms 5; expected an integer in 100...60000"),
                ] {
                    try await client.execute(uri: "/api/v1/events?\(query)", method: .get) { response in
                        #expect(response.status == .badRequest)
                        let body = try JSONDecoder().decode([String: String].self, from: Data(buffer: response.body))
                        #expect(body["error"] == message)
                    }
                }
            }
        }

        @Test("unknown paths are 404 and other methods 405, in JSON, naming what was asked")
        func refusals() async throws {
            try await app(OpsSources(bridge: try bridge())).test(.router) { client in
                try await client.execute(uri: "/api/v1/nothing", method: .get) { response in
                    #expect(response.status == .notFound)
                    let body = try JSONDecoder().decode([String: String].self, from: Data(buffer: response.body))
                    #expect(body["error"] == "no route /api/v1/nothing")
                    #expect(body["routes"]?.contains("/metrics") == true)
                }
                // HEAD is GET without the body.
                try await client.execute(uri: "/health/ready", method: .head) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                    #expect(response.body.readableBytes == 0)
                }
                for method in [HTTPRequest.Method.post, .delete, .put] {
                    try await client.execute(uri: "/metrics", method: method) { response in
                        #expect(response.status == .methodNotAllowed)
                        #expect(response.headers[.allow] == "GET, HEAD")
                        let body = try JSONDecoder().decode([String: String].self, from: Data(buffer: response.body))
                        #expect(body["error"] == "\(method) /metrics is not allowed; use GET")
                    }
                }
            }
        }

        @Test("OpsServer listens on a real socket and reports the port it bound")
        func liveServer() async throws {
            let sources = OpsSources(bridge: try bridge())
            let bound = AsyncStream<Int>.makeStream()
            let server = try OpsServer(
                sources: sources, host: "127.0.0.1", port: 0, logger: Logger(label: "test.ops")
            ) { port in bound.continuation.yield(port) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await server.run() }
                var ports = bound.stream.makeAsyncIterator()
                let port = try #require(await ports.next())
                #expect(port > 0)
                let (status, body) = try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/health/live")
                #expect(status == 200)
                #expect(body == #"{"status":"live"}"#)
                group.cancelAll()
            }
        }
    }
#endif
