import Foundation
import GPUBridge
import Logging
import ServiceLifecycle
import Synchronization
import Tracing

#if OTLP
    import OTel
#endif

/// Where a process sends its spans (`SpanNames`): an OTLP collector's endpoint and protocol, and the service name the
/// spans carry. Built from flags and the standard OpenTelemetry variables by `resolve`; a value, any thread.
public struct TraceExportSettings: Sendable, Hashable {
    /// The OTLP wire protocols (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    public enum ExportProtocol: String, Sendable, CaseIterable {
        case grpc
        case httpProtobuf = "http/protobuf"
        case httpJSON = "http/json"
    }

    /// The collector's URL as given (`http://host:4318` for HTTP, `http://host:4317` for gRPC); nil when only the
    /// environment names it.
    public var endpoint: String?
    /// Nil when only the environment (or swift-otel's default, http/protobuf) decides.
    public var exportProtocol: ExportProtocol?
    /// `service.name` of the spans (`OTEL_SERVICE_NAME` overrides it).
    public var serviceName: String

    public init(serviceName: String, endpoint: String? = nil, exportProtocol: ExportProtocol? = nil) {
        self.serviceName = serviceName
        self.endpoint = endpoint
        self.exportProtocol = exportProtocol
    }

    /// The settings for a process given `--otlp-endpoint` (`endpoint`) and `--otlp-protocol` (`protocolName`), or nil
    /// when export was not asked for: no endpoint flag and neither `OTEL_EXPORTER_OTLP_ENDPOINT` nor
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, or `OTEL_SDK_DISABLED=true` / `OTEL_TRACES_EXPORTER=none`. Nothing
    /// leaves the process unless asked. Throws `invalidArgument` naming the flag for a URL that is not
    /// http(s)://host[:port][/path] or an unknown protocol.
    public static func resolve(
        endpoint: String?, protocolName: String?, serviceName: String, environment: [String: String]
    ) throws(GPUBridgeError) -> TraceExportSettings? {
        var settings = TraceExportSettings(serviceName: serviceName)
        if let protocolName {
            guard let parsed = ExportProtocol(rawValue: protocolName) else {
                throw .invalidArgument(
                    name: "--otlp-protocol", value: protocolName,
                    limit: ExportProtocol.allCases.map(\.rawValue).joined(separator: ", "))
            }
            settings.exportProtocol = parsed
        }
        if let endpoint {
            guard let url = URL(string: endpoint), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty
            else {
                throw .invalidArgument(
                    name: "--otlp-endpoint", value: endpoint,
                    limit: "an http:// or https:// URL with a host, such as http://127.0.0.1:4318")
            }
            settings.endpoint = endpoint
        }
        if environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" { return nil }
        if environment["OTEL_TRACES_EXPORTER"]?.lowercased() == "none" { return nil }
        let fromEnvironment = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].contains {
            !(environment[$0] ?? "").isEmpty
        }
        return settings.endpoint != nil || fromEnvironment ? settings : nil
    }

    /// The URL spans are posted to: for HTTP the endpoint with `/v1/traces` added (as the OpenTelemetry
    /// specification does for `OTEL_EXPORTER_OTLP_ENDPOINT`) unless it already ends so; for gRPC the endpoint.
    var tracesURL: String? {
        guard let endpoint else { return nil }
        if exportProtocol == .grpc || endpoint.hasSuffix("/v1/traces") { return endpoint }
        return endpoint.hasSuffix("/") ? endpoint + "v1/traces" : endpoint + "/v1/traces"
    }
}

/// OTLP trace export (swift-otel) for a process: bootstraps the process's tracer once and returns the service that
/// batches and sends the spans. Run that service in the process's `ServiceGroup`, listed before the services whose
/// spans it carries (a group stops in reverse order): its graceful shutdown flushes what is buffered. The standard
/// OpenTelemetry variables (`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, ...) are applied by
/// swift-otel after the settings, so a variable that is set wins over the flag.
///
/// Costs: one tracer for the process; each recorded span is queued (at most 2048, then dropped) and sent in batches
/// every 5 s or at shutdown.
public enum TraceExport {
    /// Whether this build can export (the package trait `OTLP`).
    public static var isAvailable: Bool {
        #if OTLP
            true
        #else
            false
        #endif
    }

    private static let bootstrapped = Mutex(false)

    /// Bootstraps the tracer for `settings` and returns its exporting service. Throws `invalidArgument` when the
    /// process already bootstrapped one (`InstrumentationSystem` takes one), `unsupported` without the `OTLP` trait, and
    /// `invalidArgument` when swift-otel refuses the configuration (a bad `OTEL_*` variable, say).
    public static func start(_ settings: TraceExportSettings, logger: Logger) throws(GPUBridgeError) -> any Service {
        #if OTLP
            var configuration = OTel.Configuration.default
            configuration.serviceName = settings.serviceName
            configuration.logs.enabled = false
            configuration.metrics.enabled = false
            configuration.traces.enabled = true
            configuration.traces.exporter = .otlp
            configuration.diagnosticLogger = .custom(logger)
            configuration.diagnosticLogLevel = .warning
            configuration.resourceAttributes["service.version"] = GPUBridgeVersion.string
            configuration.resourceAttributes["process.pid"] = "\(ProcessInfo.processInfo.processIdentifier)"
            if let url = settings.tracesURL { configuration.traces.otlpExporter.endpoint = url }
            // A collector that cannot be reached holds each export until this timeout (the HTTP client keeps trying
            // to connect), and the last flush delays the process's exit by as much: 3 s rather than swift-otel's 10
            // (OTEL_EXPORTER_OTLP_TIMEOUT overrides it).
            configuration.traces.otlpExporter.timeout = .seconds(3)
            configuration.traces.batchSpanProcessor.exportTimeout = .seconds(5)
            switch settings.exportProtocol {
            case .grpc?: configuration.traces.otlpExporter.protocol = .grpc
            case .httpProtobuf?: configuration.traces.otlpExporter.protocol = .httpProtobuf
            case .httpJSON?: configuration.traces.otlpExporter.protocol = .httpJSON
            case nil: break
            }
            let first = bootstrapped.withLock { done in
                defer { done = true }
                return !done
            }
            guard first else {
                throw .invalidArgument(
                    name: "trace export", value: "a second start",
                    limit: "one per process (InstrumentationSystem takes one tracer)")
            }
            do {
                let backend = try OTel.makeTracingBackend(configuration: configuration)
                InstrumentationSystem.bootstrap(backend.factory)
                return backend.service
            } catch {
                bootstrapped.withLock { $0 = false }
                throw .invalidArgument(
                    name: "OTLP trace export", value: settings.tracesURL ?? "(from the environment)",
                    limit: "a configuration swift-otel accepts: \(error)")
            }
        #else
            throw .unsupported(
                feature: "OTLP trace export (--otlp-endpoint)", backend: "this build without the OTLP trait")
        #endif
    }
}
