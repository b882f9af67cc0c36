import ArgumentParser
import GPUBridgeOps
import Logging
import ServiceLifecycle

/// `--otlp-endpoint` and `--otlp-protocol`: where a process (`node`, `serve`, `call`) sends its spans. Nothing is sent
/// unless an endpoint is given here or in `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
struct TraceOptions: ParsableArguments {
    @Option(
        name: .long,
        help: """
            Send spans to this OpenTelemetry collector (OTLP), e.g. http://127.0.0.1:4318 (HTTP) or \
            http://127.0.0.1:4317 (gRPC). Also OTEL_EXPORTER_OTLP_ENDPOINT; the OTEL_* variables win over flags.
            """)
    var otlpEndpoint: String?
    @Option(
        name: .long,
        help: "OTLP protocol: http/protobuf (default), http/json or grpc. Also OTEL_EXPORTER_OTLP_PROTOCOL.")
    var otlpProtocol: String?

    /// The export settings for a process named `serviceName` (`endpoint`/`protocolName` from a config file fill in
    /// for absent flags), or nil when export was not asked for.
    func settings(
        serviceName: String, environment: [String: String], endpoint: String? = nil, protocolName: String? = nil
    ) throws -> TraceExportSettings? {
        do {
            return try TraceExportSettings.resolve(
                endpoint: otlpEndpoint ?? endpoint, protocolName: otlpProtocol ?? protocolName,
                serviceName: serviceName, environment: environment)
        } catch { throw ValidationError("\(error)") }
    }

    /// Bootstraps the tracer for `settings` and returns the service that exports its spans; list it first in the
    /// process's group, so it stops last and flushes the spans of everything else.
    static func start(_ settings: TraceExportSettings, logger: Logger) throws -> any Service {
        do { return try TraceExport.start(settings, logger: logger) } catch {
            throw ValidationError("\(error)")
        }
    }
}
