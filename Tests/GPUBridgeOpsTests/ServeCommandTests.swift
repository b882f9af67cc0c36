#if HTTP
    import Foundation
    import Testing

    /// The built `gpubridge` executable next to this test bundle (`swift build --build-tests` builds both).
    private let cli: String? = {
        let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [folder, folder.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("gpubridge").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }()

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

        @Test(
            "serve --demo-load: the URL line, the demo actor, launches rising between scrapes, a clean stop on SIGTERM")
        func serve() throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gpubridge-serve-\(UUID())")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let out = folder.appendingPathComponent("out"), err = folder.appendingPathComponent("err")
            #expect(FileManager.default.createFile(atPath: out.path, contents: nil))
            #expect(FileManager.default.createFile(atPath: err.path, contents: nil))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: cli!)
            process.arguments = [
                "serve", "--http", "127.0.0.1:0", "--devices", "cpu", "--demo-load", "50", "--vector-dim", "16",
            ]
            process.standardOutput = try FileHandle(forWritingTo: out)
            process.standardError = try FileHandle(forWritingTo: err)
            try process.run()
            defer { if process.isRunning { process.terminate() } }
            let output = { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
            let port = try #require(
                try waitFor(60) { () -> Int? in
                    guard let line = output().split(separator: "\n").first(where: { $0.contains(#""event":"http""#) }),
                        let colon = line.lastIndex(of: ":")
                    else { return nil }
                    return Int(line[line.index(after: colon)...].prefix { $0.isNumber })
                }, "no http line; stderr: \((try? String(contentsOf: err, encoding: .utf8)) ?? "")")

            #expect(try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/health/ready").status == 200)
            let launches = #"gpubridge_device_launches_total{device="cpu:0"}"#
            let first = try #require(
                try waitFor(60) { () -> Double? in
                    let (_, body) = try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/api/v1/actors")
                    guard body.contains(#""key":"demo""#) else { return nil }
                    return sample(try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/metrics").body, launches)
                })
            let later = try waitFor(60) { () -> Double? in
                let value = sample(try HTTPGet.fetch(host: "127.0.0.1", port: port, path: "/metrics").body, launches)
                return value.flatMap { $0 > first ? $0 : nil }
            }
            #expect(later != nil, "launches stayed at \(first)")

            process.terminate()  // SIGTERM
            process.waitUntilExit()
            #expect(process.terminationReason == .exit && process.terminationStatus == 0)
            #expect(output().hasSuffix(#"{"event":"stopped","error":false}"# + "\n"))
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
