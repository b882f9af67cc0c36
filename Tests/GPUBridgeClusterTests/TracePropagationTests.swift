#if HTTP && OTLP
    import Foundation
    import GPUBridge
    import GPUBridgeCluster
    import GPUBridgeTestSupport
    import Testing

    extension ProcessClusterTests {
        @Test(
            "OTLP: a gpubridge call process and the node process that serves it export one trace: call, client, server, actor call, copies and kernel launches",
            arguments: WireKind.allCases
        )
        func tracePropagation(wire: WireKind) async throws {
            let receiver = try await OTLPReceiver()
            try await ProcessCluster.run { cluster in
                let flags = [
                    "--otlp-endpoint", "http://127.0.0.1:\(receiver.port)", "--otlp-protocol", "http/json",
                    "--transport", wire.rawValue,
                ]
                let nodes = try (0..<2).map { _ in try cluster.startNode(extra: flags) }
                var ids: [NodeID] = []
                for node in nodes { ids.append(try await node.waitReady()) }
                let upsert = try await cluster.call([
                    ["vector-index", "traced", "upsert-random", "--rows", "64", "--seed", "3"] + flags
                ])
                #expect(upsert.first?.status == 0, "\(upsert)")
                let query = try await cluster.call([
                    ["vector-index", "traced", "query-random", "--k", "2", "--seed", "3"] + flags
                ])
                #expect(query.first?.status == 0, "\(query)")
                let host = try #require(ids.first { query.first?.output.contains($0.description) == true })

                // The call process flushes before it exits; the nodes send their batch within about 5 s.
                func root() -> OTLPReceiver.ReceivedSpan? {
                    receiver.spans.first {
                        $0.name == "gpubridge.call" && $0.attributes["gpubridge.actor.method"] == "query-random"
                    }
                }
                #expect(await eventually(timeout: .seconds(30)) { root() != nil }, "spans: \(receiver.spans)")
                let call = try #require(root())
                #expect(call.service == "gpubridge-call")
                func trace() -> [OTLPReceiver.ReceivedSpan] { receiver.spans.filter { $0.traceID == call.traceID } }
                #expect(
                    await eventually(timeout: .seconds(30)) {
                        trace().contains { $0.name == SpanNames.launch && $0.service == "gpubridge-node" }
                    }, "trace \(call.traceID): \(trace())")
                let spans = trace()
                let client = try #require(spans.first { $0.name == SpanNames.remoteCall }, "\(spans)")
                #expect(client.service == "gpubridge-call")
                #expect(client.parentSpanID == call.spanID)
                #expect(client.attributes["gpubridge.node"] == host.description)
                // The node's server span continues the client's span: the trace context crossed in the gRPC metadata
                // (or the TCP transport's call frame).
                let server = try #require(spans.first { $0.name == SpanNames.serveCall }, "\(spans)")
                #expect(server.service == "gpubridge-node")
                #expect(server.parentSpanID == client.spanID)
                #expect(server.attributes["gpubridge.actor.method"] == "VectorIndexActor.query")
                let actorCall = try #require(spans.first { $0.name == SpanNames.actorCall }, "\(spans)")
                #expect(actorCall.parentSpanID == server.spanID)
                #expect(actorCall.attributes["gpubridge.actor.key"] == "traced")
                // Under the actor call: the query's upload and the kernels of the top-k search, all on the node.
                let spanIDs = Set(spans.map(\.spanID))
                let work = spans.filter { $0.name == SpanNames.launch || $0.name == SpanNames.copy }
                #expect(work.contains { $0.name == SpanNames.copy })
                #expect(work.allSatisfy { $0.service == "gpubridge-node" && spanIDs.contains($0.parentSpanID) })
                #expect(work.contains { $0.attributes["gpubridge.kernel"] != nil })
                // One process per service in this trace: nothing else joined it, and every export parsed.
                #expect(Set(spans.map(\.service)) == ["gpubridge-call", "gpubridge-node"])
                #expect(receiver.refused.isEmpty, "\(receiver.refused)")
            }
            await receiver.stop()
        }
    }
#endif
