import Glibc

/// A search for an optional native library: candidate names or paths tried in order with `dlopen`, the first that
/// opens and exports the required symbol wins, and every refusal is kept for the report (`gpubridge devices`).
///
/// Used for the vendor libraries a backend can run without (CLBlast for OpenCL, cuBLAS for CUDA). Stateless; any
/// thread. Cost: one `dlopen` and `dlsym` per candidate tried.
package enum LibrarySearch {
    /// A library found, the candidate that found it, and the file the loader mapped for `symbol`.
    package struct Found: Sendable {
        package let library: LoadedLibrary
        package let candidate: String
        /// The file holding the symbol with every link resolved (`candidate` when it cannot be told).
        package let file: String
    }

    /// Applies an environment setting to the search: `off` finds nothing; a path or name is tried before `defaults`.
    /// `variable` names the setting in the report.
    package static func find(
        variable: String, setting: String?, defaults: [String], exporting symbol: String
    ) -> Result<Found, LibraryNotFound> {
        if setting == "off" {
            return .failure(
                LibraryNotFound(attempts: [LibraryNotFound.Attempt(candidate: variable, reason: "set to off")]))
        }
        return first(of: (setting.map { [$0] } ?? []) + defaults, exporting: symbol)
    }

    /// The first of `candidates` that opens and exports `symbol`, or every refusal.
    package static func first(of candidates: [String], exporting symbol: String) -> Result<Found, LibraryNotFound> {
        var attempts: [LibraryNotFound.Attempt] = []
        for candidate in candidates {
            switch LoadedLibrary.open(candidate) {
            case let .failure(error):
                attempts.append(LibraryNotFound.Attempt(candidate: candidate, reason: error.message))
            case let .success(library):
                guard library.address(symbol) != nil else {
                    attempts.append(LibraryNotFound.Attempt(candidate: candidate, reason: "does not export \(symbol)"))
                    continue
                }
                let path = library.path(containing: symbol) ?? candidate
                return .success(Found(library: library, candidate: candidate, file: resolved(path)))
            }
        }
        return .failure(LibraryNotFound(attempts: attempts))
    }

    /// `path` with every symbolic link resolved, or `path` itself when it cannot be resolved.
    package static func resolved(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// Why an optional native library was not found: every candidate tried, in order, and why each was refused.
public struct LibraryNotFound: Error, Sendable, CustomStringConvertible {
    /// One library name or path tried, and `dlerror()`'s text or the missing symbol.
    public struct Attempt: Sendable, Equatable {
        public let candidate: String
        public let reason: String
        public init(candidate: String, reason: String) {
            self.candidate = candidate
            self.reason = reason
        }
    }

    public let attempts: [Attempt]
    public init(attempts: [Attempt]) { self.attempts = attempts }

    public var description: String {
        attempts.isEmpty ? "no candidates" : attempts.map { "\($0.candidate): \($0.reason)" }.joined(separator: "; ")
    }
}
