import Foundation

/// Per-call settings of cluster calls, set for a scope with `withValue`. Task-local: each task sees its own; reading
/// it costs a task-local lookup.
public enum ClusterCall {
    /// The deadline of the calls made in this scope (default: `ClusterOptions.callTimeout`).
    @TaskLocal public static var timeout: Duration?
}
