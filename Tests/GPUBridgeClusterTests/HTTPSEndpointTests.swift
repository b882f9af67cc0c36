#if HTTP
    import Foundation
    import GPUBridgeTestSupport
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
                let ready = try runProcess(
                    "/usr/bin/curl",
                    ["-sS", "--max-time", "10", "--cacert", cluster.certificates.ca, base + "/health/ready"])
                #expect(ready.status == 0)
                #expect(ready.output.contains(#""ready":true"#), "\(ready.output)")
            }
        }
    }
#endif
