#if HTTP
    import Foundation
    import Testing

    extension ProcessClusterTests {
        @Test(
            "node --http --http-tls serves the operations endpoint over HTTPS with the node's cluster certificate",
            .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"), "needs curl"))
        func httpsEndpoint() async throws {
            try await ProcessCluster.run { cluster in
                let node = try cluster.startNode(extra: ["--http", "127.0.0.1:0", "--http-tls"])
                _ = try await node.waitReady()
                var url: String?
                #expect(
                    await eventually(timeout: .seconds(30)) {
                        url = node.output.split(separator: "\n").first { $0.contains(#""event":"http""#) }.flatMap {
                            line in
                            line.range(of: #""url":""#).map { String(line[$0.upperBound...].prefix { $0 != "\"" }) }
                        }
                        return url != nil
                    }, "\(node.output)")
                let base = try #require(url)
                #expect(base.hasPrefix("https://127.0.0.1:"))
                let curl = Process()
                curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
                curl.arguments = [
                    "-sS", "--max-time", "10", "--cacert", cluster.certificates.ca, base + "/health/ready",
                ]
                let output = Pipe()
                curl.standardOutput = output
                curl.standardError = FileHandle.nullDevice
                try curl.run()
                let body = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                curl.waitUntilExit()
                #expect(curl.terminationStatus == 0)
                #expect(body.contains(#""ready":true"#), "\(body)")
            }
        }
    }
#endif
