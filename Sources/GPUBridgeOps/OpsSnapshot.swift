import Foundation

/// Everything the dashboard shows, read at one moment: what `/api/v1/snapshot` answers and `/api/v1/events` streams.
/// A value; any thread. Reading one costs what its parts cost (`OpsSources`): a few locks per device, no driver call.
public struct OpsSnapshot: Sendable, Hashable, Codable {
    /// When it was read (this process's clock).
    public var time: Date
    public var readiness: Readiness
    public var devices: [DeviceReport]
    /// Nil when the process hosts no actors.
    public var actors: ActorsReport?
    /// Nil outside cluster mode.
    public var cluster: ClusterReport?
    /// The 20 newest warnings and errors and the counts by level; nil when the process keeps none.
    public var errors: RecentErrors.Report?
}

extension OpsSources {
    public func snapshot() -> OpsSnapshot {
        OpsSnapshot(
            time: Date(), readiness: readiness(), devices: deviceReports(), actors: actorsReport(),
            cluster: clusterReport(), errors: errors?.report(limit: 20))
    }
}

/// The JSON of the API: keys sorted, dates as ISO 8601 with milliseconds (`2026-12-03T02:18:08.123Z`), so that two
/// snapshots a fraction of a second apart have different times. Stateless: each call makes a new encoder or decoder,
/// owned by its caller and used on one thread; making one costs a few small allocations.
public enum OpsJSON {
    static let dates = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(dates.format(date))
        }
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            return try dates.parse(text)
        }
        return decoder
    }
}
