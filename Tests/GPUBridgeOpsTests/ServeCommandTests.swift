#if HTTP
    import Foundation
    import GPUBridgeTestSupport
    import Testing

    /// The built `gpubridge` executable (`CLIBinary`).
    private let cli = CLIBinary.path

    /// curl, when installed (the HTTPS test fetches with it, checking the chain against the test CA).
    private let curl: String? = ["/usr/bin/curl", "/bin/curl"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Chromium, when installed.
    private let chromium: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    @Suite(
        "gpubridge serve: the operations endpoint of a running process",
        .enabled(if: cli != nil, "the gpubridge executable was not built beside the tests"))
    struct ServeCommandTests {
        /// Polls `condition` every 50 ms until it returns a value or `seconds` pass.
        func waitFor<T>(_ seconds: Double, _ condition: () throws -> T?) throws -> T? {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if let value = try condition() { return value }
                usleep(50_000)
            }
            return nil
        }

        func sample(_ text: String, _ series: String) -> Double? {
            for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
                return Double(line.dropFirst(series.count + 1))
            }
            return nil
        }

        /// A running `gpubridge serve --demo-load 50` on a free port, its output in a temporary folder.
        final class Served {
            let process = Process()
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gpubridge-serve-\(UUID())")
            var out: URL { folder.appendingPathComponent("out") }
            var err: URL { folder.appendingPathComponent("err") }
            var output: String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
            var errors: String { (try? String(contentsOf: err, encoding: .utf8)) ?? "" }

            init(extra: [String] = []) throws {
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                #expect(FileManager.default.createFile(atPath: out.path, contents: nil))
                #expect(FileManager.default.createFile(atPath: err.path, contents: nil))
                process.executableURL = URL(fileURLWithPath: cli!)
                process.arguments =
                    [
                        "serve", "--http", "127.0.0.1:0", "--devices", "cpu", "--demo-load", "50", "--vector-dim", "16",
                    ] + extra
                process.standardOutput = try FileHandle(forWritingTo: out)
                process.standardError = try FileHandle(forWritingTo: err)
                try process.run()
            }

            deinit {
                if process.isRunning { process.terminate() }
                try? FileManager.default.removeItem(at: folder)
            }
        }

        /// The port from the process's `{"event":"http",...}` line, once printed.
        func port(of served: Served) throws -> Int {
            try #require(
                try waitFor(60) { () -> Int? in
                    guard
                        let line = served.output.split(separator: "\n").first(where: {
                            $0.contains(#""event":"http""#)
                        }),
                        let colon = line.lastIndex(of: ":")
                    else { return nil }
                    return Int(line[line.index(after: colon)...].prefix { $0.isNumber })
                }, "no http line; stderr: \(served.errors)")
        }

        static let launches = #"gpubridge_device_launches_total{device="cpu:0"}"#

        /// The device's launch count once the demo actor is active.
        func launchesOnceDemoRuns(port: Int) throws -> Double {
            try #require(
                try waitFor(60) { () -> Double? in
                    let (_, body) = try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/api/v1/actors")
                    guard body.contains(#""key":"demo""#) else { return nil }
                    return sample(
                        try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/metrics").body, Self.launches)
                })
        }

        @Test(
            "serve --demo-load: the URL line, the demo actor, launches rising between scrapes, a clean stop on SIGTERM")
        func serve() throws {
            let served = try Served()
            let port = try port(of: served)
            #expect(try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/health/ready").status == 200)
            let first = try launchesOnceDemoRuns(port: port)
            let later = try waitFor(60) { () -> Double? in
                let value = sample(
                    try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/metrics").body, Self.launches)
                return value.flatMap { $0 > first ? $0 : nil }
            }
            #expect(later != nil, "launches stayed at \(first)")

            served.process.terminate()  // SIGTERM
            served.process.waitUntilExit()
            #expect(served.process.terminationReason == .exit && served.process.terminationStatus == 0)
            #expect(served.output.hasSuffix(#"{"event":"stopped","error":false}"# + "\n"))
        }

        @Test(
            "the dashboard in a real browser (headless Chromium): the device card, the demo actor, the launch count rising",
            .enabled(if: chromium != nil, "needs Chromium (scripts/test installs Debian's chromium)"))
        func dashboardInBrowser() throws {
            let served = try Served()
            let port = try port(of: served)
            let before = try launchesOnceDemoRuns(port: port)
            let browser = Process()
            browser.executableURL = URL(fileURLWithPath: chromium!)
            browser.arguments = [
                "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=30000", "--dump-dom",
                "http://127.0.0.1:\(port)/?events=3&interval_ms=300",
            ]
            let dom = Pipe()
            browser.standardOutput = dom
            browser.standardError = FileHandle.nullDevice
            try browser.run()
            let page = String(decoding: dom.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            browser.waitUntilExit()
            #expect(browser.terminationStatus == 0)
            // The page rendered three live updates, then stopped following.
            #expect(page.contains(#"data-updates="3""#), "\(page.prefix(2000))")
            #expect(page.contains(#"data-device="cpu:0""#))
            #expect(page.contains(#"data-actor="vector-index/demo""#))
            #expect(page.contains(">ready</span>"))
            // The process's log of warnings and errors reached the page (empty or not), and the latency chart is there.
            #expect(page.contains("none logged") || page.contains(#"class="error-entry""#), "\(page.prefix(4000))")
            #expect(page.contains(#"<canvas id="latency""#))
            let shown = page.components(separatedBy: #"id="launches-total">"#).dropFirst().first.flatMap {
                Double($0.prefix { $0.isNumber })
            }
            #expect(shown.map { $0 > before } == true, "launches shown \(String(describing: shown)), \(before) before")
        }

        @Test(
            "serve --http-tls-cert/--http-tls-key: HTTPS with a certificate of the cluster CA; plain HTTP is not answered",
            .enabled(if: curl != nil, "needs curl"))
        func https() throws {
            let certs = FileManager.default.temporaryDirectory.appendingPathComponent("gpubridge-https-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: certs) }
            #expect(try runProcess(cli!, ["certs", "--out", certs, "--name", "ops"]).status == 0)
            let served = try Served(extra: [
                "--http-tls-cert", "\(certs)/ops.pem", "--http-tls-key", "\(certs)/ops-key.pem",
            ])
            let port = try port(of: served)
            #expect(served.output.contains(#""url":"https://127.0.0.1:\#(port)""#), "\(served.output)")
            // The chain verifies against the CA that issued it (curl checks the 127.0.0.1 address in the certificate).
            let live = try runProcess(
                curl!,
                ["-sS", "--max-time", "10", "--cacert", "\(certs)/ca.pem", "https://127.0.0.1:\(port)/health/live"])
            #expect(live.status == 0)
            #expect(live.output == #"{"status":"live"}"#)
            // Another CA's client does not trust it.
            let other = FileManager.default.temporaryDirectory.appendingPathComponent("gpubridge-https-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: other) }
            #expect(try runProcess(cli!, ["certs", "--out", other]).status == 0)
            let refused = try runProcess(
                curl!,
                ["-sS", "--max-time", "10", "--cacert", "\(other)/ca.pem", "https://127.0.0.1:\(port)/health/live"])
            #expect(refused.status != 0)
            // Plain HTTP on the HTTPS port gets no HTTP answer.
            let plain = try? HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/health/live")
            #expect(plain?.status != 200)
        }

        @Test("serve refuses a bad --http and a bad --demo-load, naming the value and the limit")
        func badInput() throws {
            for (arguments, message) in [
                (["--http", "localhost"], "invalid --http localhost; expected host:port with port 0...65535"),
                (
                    ["--http", "127.0.0.1:70000"],
                    "invalid --http 127.0.0.1:70000; expected host:port with port 0...65535"
                ),
                (
                    ["--http", "127.0.0.1:0", "--demo-load", "20000"],
                    "invalid --demo-load 20000; expected 0...10000 queries a second"
                ),
                (
                    ["--http", "127.0.0.1:0", "--http-tls-cert", "/nonexistent.pem"],
                    "invalid HTTPS settings: give both --http-tls-cert and --http-tls-key, or neither"
                ),
                (
                    ["--http", "127.0.0.1:0", "--http-tls-cert", "/nonexistent.pem", "--http-tls-key", "/k.pem"],
                    "invalid --http-tls-cert /nonexistent.pem; expected a readable PEM file"
                ),
                (
                    ["--http", "127.0.0.1:0", "--otlp-endpoint", "collector:4318"],
                    "invalid argument '--otlp-endpoint': value collector:4318"
                ),
            ] {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: cli!)
                process.arguments = ["serve"] + arguments
                let errors = Pipe()
                process.standardError = errors
                process.standardOutput = Pipe()
                try process.run()
                let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                #expect(process.terminationStatus == 64, "\(arguments)")
                #expect(text.contains(message), "\(text)")
            }
        }
    }
#endif
