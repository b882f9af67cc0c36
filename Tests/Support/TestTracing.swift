import InMemoryTracing
import Instrumentation
import ServiceContextModule
import Tracing

/// The test process's tracer (the instrumentation system takes one per process, and every test target runs in one
/// process). It keeps only the spans made inside `TestTracing.recording`: elsewhere spans are made (so the code under
/// test takes its traced path) but dropped when they end, so the tests that never look at spans do not fill memory.
public enum TestTracing {
    public static let tracer: InMemoryTracer = {
        let tracer = InMemoryTracer()
        InstrumentationSystem.bootstrap(ScopedTracer(inner: tracer))
        return tracer
    }()

    /// Runs `body` with its spans (and their children, in any task that inherits the context) recorded in `tracer`.
    public static func recording<T>(_ body: () async throws -> T) async rethrows -> T {
        _ = tracer
        var context = ServiceContext.current ?? .topLevel
        context[RecordingKey.self] = true
        return try await ServiceContext.withValue(context) { try await body() }
    }
}

private enum RecordingKey: ServiceContextKey {
    typealias Value = Bool
}

/// `InMemoryTracer` for spans whose context carries `RecordingKey`; other spans are in-memory spans nobody keeps.
private struct ScopedTracer: Tracer {
    let inner: InMemoryTracer

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> InMemorySpan {
        var parent = context()
        if parent[RecordingKey.self] == true {
            return inner.startSpan(
                operationName, context: parent, ofKind: kind, at: instant(), function: function, file: fileID,
                line: line)
        }
        let spanContext = InMemorySpanContext(traceID: "untraced", spanID: "untraced", parentSpanID: nil)
        parent.inMemorySpanContext = spanContext
        return InMemorySpan(
            operationName: operationName, context: parent, spanContext: spanContext, kind: kind,
            startInstant: instant(), onEnd: { _ in })
    }

    func forceFlush() { inner.forceFlush() }

    func inject<Carrier, Inject: Injector>(
        _ context: ServiceContext, into carrier: inout Carrier, using injector: Inject
    ) where Inject.Carrier == Carrier {
        inner.inject(context, into: &carrier, using: injector)
    }

    func extract<Carrier, Extract: Extractor>(
        _ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract
    ) where Extract.Carrier == Carrier {
        inner.extract(carrier, into: &context, using: extractor)
    }
}
