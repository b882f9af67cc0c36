import GRPCCore
import Instrumentation
import ServiceContextModule
import Tracing

/// Writes a trace context (W3C `traceparent`/`tracestate`, or whatever the bootstrapped instrument uses) into a gRPC
/// call's metadata. Stateless; any thread.
struct MetadataInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout Metadata) {
        carrier.replaceOrAddString(value, forKey: key)
    }
}

/// Reads a trace context from a gRPC call's metadata (the first string value of a key). Stateless; any thread.
struct MetadataExtractor: Extractor {
    func extract(key: String, from carrier: Metadata) -> String? {
        carrier[stringValues: key].first(where: { _ in true })
    }
}

extension Metadata {
    /// Metadata carrying the current task's trace context, as the bootstrapped instrument writes it (empty when
    /// nothing is bootstrapped or no span is current).
    static func withCurrentTraceContext() -> Metadata {
        var metadata = Metadata()
        guard let context = ServiceContext.current else { return metadata }
        InstrumentationSystem.instrument.inject(context, into: &metadata, using: MetadataInjector())
        return metadata
    }

    /// The trace context a caller sent, as a context to start the server's span in (top level when none came).
    var traceContext: ServiceContext {
        var context = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(self, into: &context, using: MetadataExtractor())
        return context
    }
}
