#if HTTP
    import Foundation
    import Hummingbird
    import Logging
    import Synchronization

    /// An OpenTelemetry collector for tests: an in-process HTTP server that takes OTLP/HTTP JSON exports
    /// (`POST /v1/traces`, as swift-otel sends with `--otlp-protocol http/json`) and keeps every span it was sent.
    final class OTLPReceiver: Sendable {
        struct ReceivedSpan: Sendable, CustomStringConvertible {
            var service: String
            var traceID: String
            var spanID: String
            var parentSpanID: String
            var name: String
            var kind: String
            var attributes: [String: String]

            var description: String {
                "\(service) \(name) trace \(traceID) span \(spanID) parent \(parentSpanID.isEmpty ? "-" : parentSpanID)"
            }
        }

        private final class Received: Sendable {
            let state = Mutex<(spans: [ReceivedSpan], refused: [String])>(([], []))
        }
        private let received = Received()
        private let task: Task<Void, any Error>
        let port: Int

        var spans: [ReceivedSpan] { received.state.withLock { $0.spans } }
        /// Export requests whose body was not OTLP JSON (each with the reason); a test expects none.
        var refused: [String] { received.state.withLock { $0.refused } }

        /// Starts listening on a free loopback port; returns once it is listening.
        init() async throws {
            let received = self.received
            let router = Router()
            router.post("/v1/traces") { request, _ -> Response in
                let body = try await request.body.collect(upTo: 64 << 20)
                do {
                    let spans = try Self.parse(Data(buffer: body))
                    received.state.withLock { $0.spans += spans }
                } catch {
                    received.state.withLock { $0.refused.append("\(error)") }
                    return Response(status: .badRequest)
                }
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(string: "{}")))
            }
            let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
            var logger = Logger(label: "otlp-receiver")
            // Stopping the receiver cancels its server, which Hummingbird logs as an error.
            logger.logLevel = .critical
            let application = Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { channel in
                    continuation.yield(channel.localAddress?.port ?? 0)
                    continuation.finish()
                }, logger: logger)
            task = Task { try await application.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next(), port > 0 else {
                task.cancel()
                throw ReceiverError(message: "the OTLP receiver did not start listening")
            }
            self.port = port
        }

        deinit { task.cancel() }

        func stop() async {
            task.cancel()
            _ = await task.result
        }

        struct ReceiverError: Error, CustomStringConvertible {
            var message: String
            var description: String { message }
        }

        /// The spans of one `ExportTraceServiceRequest` in OTLP's JSON mapping: resourceSpans[].resource.attributes
        /// (service.name) and resourceSpans[].scopeSpans[].spans[].
        static func parse(_ data: Data) throws -> [ReceivedSpan] {
            guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ReceiverError(message: "not a JSON object")
            }
            var spans: [ReceivedSpan] = []
            for resourceSpans in root["resourceSpans"] as? [[String: Any]] ?? [] {
                let resource = attributes((resourceSpans["resource"] as? [String: Any])?["attributes"])
                for scope in resourceSpans["scopeSpans"] as? [[String: Any]] ?? [] {
                    for span in scope["spans"] as? [[String: Any]] ?? [] {
                        guard let traceID = span["traceId"] as? String, let spanID = span["spanId"] as? String,
                            let name = span["name"] as? String
                        else { throw ReceiverError(message: "a span without traceId, spanId or name: \(span)") }
                        spans.append(
                            ReceivedSpan(
                                service: resource["service.name"] ?? "", traceID: traceID, spanID: spanID,
                                parentSpanID: span["parentSpanId"] as? String ?? "", name: name,
                                kind: "\(span["kind"] ?? "")", attributes: attributes(span["attributes"])))
                    }
                }
            }
            return spans
        }

        /// OTLP key-value attributes as strings (string, int, double and bool values).
        static func attributes(_ value: Any?) -> [String: String] {
            var result: [String: String] = [:]
            for pair in value as? [[String: Any]] ?? [] {
                guard let key = pair["key"] as? String, let value = pair["value"] as? [String: Any],
                    let first = value.first
                else { continue }
                result[key] = "\(first.value)"
            }
            return result
        }
    }
#endif
