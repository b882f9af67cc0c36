import Foundation
import Logging
import Synchronization

/// The last warnings and errors a process logged, for `/api/v1/errors` and the dashboard: a ring of at most
/// `capacity` entries, newest last, and a count per level since the process started.
///
/// Fed by `RecentErrors.LogHandler` (a process bootstraps it beside its usual handler, as `gpubridge` does); read by
/// the endpoint. Any thread; each record or read takes one lock and copies at most `capacity` small values.
public final class RecentErrors: Sendable {
    /// One logged message at `warning` or above.
    public struct Entry: Sendable, Hashable, Codable {
        public var time: Date
        /// `warning`, `error` or `critical`.
        public var level: String
        /// The logger's label (`gpubridge.device`, `gpubridge.cluster`, ...).
        public var source: String
        public var message: String
        /// The message's metadata as `key=value` pairs, sorted by key.
        public var metadata: String
    }

    /// What `/api/v1/errors` answers: the kept entries (newest first) and the counts since start by level.
    public struct Report: Sendable, Hashable, Codable {
        public var entries: [Entry]
        public var counts: [String: Int]
    }

    /// Entries kept; at least 1 (`init` keeps 1 when given less).
    public let capacity: Int
    private let state: Mutex<(entries: [Entry], next: Int, counts: [String: Int])>

    /// The process's own (what `gpubridge` bootstraps and serves).
    public static let process = RecentErrors(capacity: 100)

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        state = Mutex(([], 0, [:]))
    }

    public func record(_ entry: Entry) {
        state.withLock { s in
            s.counts[entry.level, default: 0] += 1
            if s.entries.count < capacity {
                s.entries.append(entry)
            } else {
                s.entries[s.next] = entry
            }
            s.next = (s.next + 1) % capacity
        }
    }

    /// The newest `limit` entries (all kept when nil), newest first, and the counts by level.
    public func report(limit: Int? = nil) -> Report {
        state.withLock { s in
            let ordered: [Entry]
            if s.entries.count < capacity {
                ordered = s.entries.reversed()
            } else {
                ordered = Array((s.entries[s.next...] + s.entries[..<s.next]).reversed())
            }
            return Report(entries: Array(ordered.prefix(limit ?? capacity)), counts: s.counts)
        }
    }

    /// A swift-log handler that records messages at `warning` and above into `errors` (and nothing else; multiplex it
    /// with the process's own handler). A value per logger; any thread.
    public struct LogHandler: Logging.LogHandler {
        public let errors: RecentErrors
        public let label: String
        public var metadata: Logger.Metadata = [:]
        public var logLevel: Logger.Level = .warning

        public init(label: String, errors: RecentErrors = .process) {
            self.label = label
            self.errors = errors
        }

        public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        public func log(event: LogEvent) {
            guard event.level >= .warning else { return }
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            errors.record(
                Entry(
                    time: Date(), level: event.level.rawValue, source: label, message: event.message.description,
                    metadata: merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                ))
        }
    }
}
