import Tracing

/// The spans GPUBridge makes (swift-distributed-tracing), by name:
/// - `gpubridge.<operation>`: one attempt of a `Bridge` operation on one device (`Bridge.run`).
/// - `gpubridge.launch`: one kernel launch awaited to its end (`Device.launch`).
/// - `gpubridge.copy`: one blocking copy between host and device memory (`RawBuffer.copy`, and what builds on it).
/// - `gpubridge.actor_call`: one call run on an actor instance of this process (`GPUBridgeActors`).
/// - `gpubridge.remote_call` (client) and `gpubridge.serve_call` (server): one call between cluster processes; the
///   trace context crosses in the gRPC metadata, so both ends share one trace (`GPUBridgeCluster`).
///
/// With no tracer bootstrapped (`InstrumentationSystem`) a span is a no-op value and its attributes are not even
/// computed (each site checks `isRecording`); a process exports them by bootstrapping one (`gpubridge` does with
/// `--otlp-endpoint`, through swift-otel). Any thread or task.
public enum SpanNames {
    public static let launch = "gpubridge.launch"
    public static let copy = "gpubridge.copy"
    public static let actorCall = "gpubridge.actor_call"
    public static let remoteCall = "gpubridge.remote_call"
    public static let serveCall = "gpubridge.serve_call"
}

/// Runs `body` inside a span named `name` (a child of the task's current context), recording a thrown error on it.
/// `attributes` runs only when the span records, so an untraced process pays for neither the strings nor the
/// dictionary. For synchronous work with typed throws, which `withSpan` does not keep.
@inline(__always)
func traced<T>(
    _ name: String, attributes: (inout SpanAttributes) -> Void, _ body: () throws(GPUBridgeError) -> T
) throws(GPUBridgeError) -> T {
    let span = startSpan(name, ofKind: .internal)
    defer { span.end() }
    if span.isRecording { span.updateAttributes(attributes) }
    do {
        return try body()
    } catch {
        span.recordError(error)
        span.setStatus(SpanStatus(code: .error))
        throw error
    }
}
