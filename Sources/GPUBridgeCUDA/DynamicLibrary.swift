import GPUBridge
import Glibc

/// The CUDA driver and NVRTC are opened with the core's `dlopen` wrapper; they stay loaded for the life of the
/// process, as the driver and NVRTC keep threads and state that must outlive every object made from them.
typealias DynamicLibrary = LoadedLibrary
typealias DynamicLibraryError = LoadedLibraryError

/// Small POSIX helpers for finding libraries on disk.
enum FileSearch {
    /// Whether `path` names an existing file (or a link to one).
    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// The paths matching a shell `pattern` (`glob(3)`), sorted; empty when none match.
    static func glob(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(pattern, 0, nil, &result) == 0 else { return [] }
        var paths: [String] = []
        for index in 0..<Int(result.gl_pathc) {
            if let path = result.gl_pathv[index] { paths.append(String(cString: path)) }
        }
        return paths.sorted()
    }

    /// An environment variable, or nil when unset or empty.
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let text = String(cString: value)
        return text.isEmpty ? nil : text
    }
}
