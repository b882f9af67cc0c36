import GPUBridge
import GPUBridgeOps
import GPUBridgeTestSupport
import Testing

@Suite("Trace export settings (--otlp-endpoint, --otlp-protocol, OTEL_* variables)")
struct TraceExportTests {
    @Test("nothing is exported unless an endpoint is given by flag or by OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT")
    func onlyWhenAsked() throws {
        #expect(
            try TraceExportSettings.resolve(endpoint: nil, protocolName: nil, serviceName: "s", environment: [:]) == nil
        )
        #expect(
            try TraceExportSettings.resolve(
                endpoint: nil, protocolName: "grpc", serviceName: "s", environment: ["OTEL_SERVICE_NAME": "x"]) == nil)
        let flag = try #require(
            try TraceExportSettings.resolve(
                endpoint: "http://127.0.0.1:4318", protocolName: nil, serviceName: "gpubridge-node", environment: [:]))
        #expect(flag.endpoint == "http://127.0.0.1:4318")
        #expect(flag.serviceName == "gpubridge-node")
        #expect(flag.exportProtocol == nil)
        for key in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
            let settings = try TraceExportSettings.resolve(
                endpoint: nil, protocolName: nil, serviceName: "s", environment: [key: "http://collector:4318"])
            #expect(settings != nil, "\(key)")
            #expect(settings?.endpoint == nil, "the environment's endpoint is applied by swift-otel")
        }
    }

    @Test("OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn export off, even with the flag")
    func disabled() throws {
        for environment in [["OTEL_SDK_DISABLED": "true"], ["OTEL_TRACES_EXPORTER": "none"]] {
            #expect(
                try TraceExportSettings.resolve(
                    endpoint: "http://127.0.0.1:4318", protocolName: nil, serviceName: "s", environment: environment)
                    == nil, "\(environment)")
        }
    }

    @Test("protocols: grpc, http/protobuf, http/json; anything else is refused naming the flag and the choices")
    func protocols() throws {
        for name in ["grpc", "http/protobuf", "http/json"] {
            let settings = try TraceExportSettings.resolve(
                endpoint: "http://h:1", protocolName: name, serviceName: "s", environment: [:])
            #expect(settings?.exportProtocol?.rawValue == name)
        }
        let error = bridgeError {
            try TraceExportSettings.resolve(
                endpoint: "http://h:1", protocolName: "udp", serviceName: "s", environment: [:])
        }
        #expect(
            error
                == .invalidArgument(name: "--otlp-protocol", value: "udp", limit: "grpc, http/protobuf, http/json"))
    }

    @Test("an endpoint that is not an http(s) URL with a host is refused naming the flag and the value")
    func badEndpoints() {
        for text in ["", "127.0.0.1:4318", "ftp://h:21", "http://", "not a url"] {
            let error = bridgeError {
                try TraceExportSettings.resolve(endpoint: text, protocolName: nil, serviceName: "s", environment: [:])
            }
            guard case let .invalidArgument(name, value, _)? = error else {
                Issue.record("\(text.debugDescription): expected invalidArgument, got \(String(describing: error))")
                continue
            }
            #expect(name == "--otlp-endpoint")
            #expect(value == text)
        }
    }
}
