#if HTTP
    import Foundation
    import Hummingbird

    /// The operations endpoint's routes, on a Hummingbird router:
    ///
    /// | Route | Answer |
    /// | --- | --- |
    /// | `GET /` | the dashboard (`DashboardPage`), self-contained HTML |
    /// | `GET /metrics` | Prometheus text (`OpsSources.metricsText()`) |
    /// | `GET /health/live` | 200 while the process answers |
    /// | `GET /health/ready` | 200 when every readiness check passes, 503 otherwise; JSON `Readiness` either way |
    /// | `GET /api/v1/devices` | JSON `[DeviceReport]` |
    /// | `GET /api/v1/actors` | JSON `ActorsReport`; 404 when the process hosts no actors |
    /// | `GET /api/v1/cluster` | JSON `ClusterReport`; 404 outside cluster mode |
    /// | `GET /api/v1/snapshot` | JSON `OpsSnapshot`: all of the above at one moment |
    /// | `GET /api/v1/events` | server-sent events, one `OpsSnapshot` per `interval_ms` (default 1000, 100...60000); `count` (1...1000000) ends the stream after that many |
    ///
    /// Any other path is 404, any other method on these paths 405, both with a JSON `{"error": ...}`. Handlers run on
    /// Hummingbird's event loops and read the live objects (`OpsSources`); none blocks or touches a device.
    public enum OpsRouter {
        public static func make(_ sources: OpsSources) -> Router<BasicRequestContext> {
            let router = Router(context: BasicRequestContext.self)
            router.add(middleware: RefusingMiddleware(paths: paths))
            get(router, "/") { _, _ in
                var headers = HTTPFields()
                headers[.contentType] = "text/html; charset=utf-8"
                return Response(
                    status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
            }
            get(router, "/metrics") { _, _ in
                var headers = HTTPFields()
                headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
                return Response(
                    status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: sources.metricsText())))
            }
            get(router, "/health/live") { _, _ in try json(.ok, ["status": "live"]) }
            get(router, "/health/ready") { _, _ in
                let readiness = sources.readiness()
                return try json(readiness.ready ? .ok : .serviceUnavailable, readiness)
            }
            get(router, "/api/v1/devices") { _, _ in try json(.ok, sources.deviceReports()) }
            get(router, "/api/v1/actors") { _, _ in
                guard let report = sources.actorsReport() else {
                    return try json(.notFound, ["error": "this process hosts no actors"])
                }
                return try json(.ok, report)
            }
            get(router, "/api/v1/cluster") { _, _ in
                guard let report = sources.clusterReport() else {
                    return try json(.notFound, ["error": "this process is not a cluster node"])
                }
                return try json(.ok, report)
            }
            get(router, "/api/v1/errors") { _, _ in
                guard let errors = sources.errors else {
                    return try json(.notFound, ["error": "this process keeps no log of its errors"])
                }
                return try json(.ok, errors.report())
            }
            get(router, "/api/v1/snapshot") { _, _ in try json(.ok, sources.snapshot()) }
            get(router, "/api/v1/events") { request, _ in
                let count: Int?, interval: Int
                do {
                    count = try parameter(request, "count", in: 1...1_000_000)
                    interval = try parameter(request, "interval_ms", in: 100...60_000) ?? 1000
                } catch let error as BadParameter {
                    return try json(.badRequest, ["error": error.description])
                }
                var headers = HTTPFields()
                headers[.contentType] = "text/event-stream"
                headers[.cacheControl] = "no-cache"
                return Response(
                    status: .ok, headers: headers,
                    body: ResponseBody { writer in
                        var sent = 0
                        while count.map({ sent < $0 }) ?? true {
                            if sent > 0 { try await Task.sleep(for: .milliseconds(interval)) }
                            let data = try encoder().encode(sources.snapshot())
                            try await writer.write(
                                ByteBuffer(string: "data: \(String(decoding: data, as: UTF8.self))\n\n"))
                            sent += 1
                        }
                        try await writer.finish(nil)
                    })
            }
            return router
        }

        /// Registers `handler` for GET on `path`, and for HEAD: the same status and headers, no body.
        static func get(
            _ router: Router<BasicRequestContext>, _ path: RouterPath,
            _ handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Response
        ) {
            router.get(path, use: handler)
            router.head(path) { request, context in
                var response = try await handler(request, context)
                response.body = ResponseBody()
                return response
            }
        }

        /// A query parameter that must be an integer in `range`; nil when absent.
        static func parameter(_ request: Request, _ name: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let text = request.uri.queryParameters[Substring(name)] else { return nil }
            guard let value = Int(text), range.contains(value) else {
                throw BadParameter(
                    description:
                        "invalid \(name) \(text); expected an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return value
        }

        struct BadParameter: Error, CustomStringConvertible {
            var description: String
        }

        static func encoder() -> JSONEncoder { OpsJSON.encoder() }

        /// The paths above; the middleware answers every other request.
        static let paths: Set<String> = [
            "/", "/metrics", "/health/live", "/health/ready", "/api/v1/devices", "/api/v1/actors", "/api/v1/cluster",
            "/api/v1/errors", "/api/v1/snapshot", "/api/v1/events",
        ]

        static func json(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
            var headers = HTTPFields()
            headers[.contentType] = "application/json; charset=utf-8"
            return Response(
                status: status, headers: headers,
                body: .init(byteBuffer: ByteBuffer(bytes: try encoder().encode(value))))
        }
    }

    /// Answers unknown paths (404) and methods other than GET and HEAD on known ones (405, with `Allow`) in JSON,
    /// before routing. Stateless; any event loop.
    struct RefusingMiddleware: RouterMiddleware {
        typealias Context = BasicRequestContext
        let paths: Set<String>

        func handle(
            _ request: Request, context: Context, next: (Request, Context) async throws -> Response
        ) async throws -> Response {
            let path = request.uri.path
            guard paths.contains(path) else {
                return try OpsRouter.json(
                    .notFound, ["error": "no route \(path)", "routes": paths.sorted().joined(separator: " ")])
            }
            guard request.method == .get || request.method == .head else {
                var response = try OpsRouter.json(
                    .methodNotAllowed, ["error": "\(request.method) \(path) is not allowed; use GET"])
                response.headers[.allow] = "GET, HEAD"
                return response
            }
            return try await next(request, context)
        }
    }
#endif
