import Glibc

/// A shared library opened with `dlopen`, and typed lookups of its C functions.
///
/// Ownership: the library stays loaded for the life of the process (it is never `dlclose`d): the CUDA driver and
/// NVRTC keep threads and state that must outlive every object made from them. Thread safety: immutable; `dlsym` is
/// thread-safe. Cost: `open` is a `dlopen`; each `function` is a `dlsym`.
final class DynamicLibrary: Sendable {
    /// The name or path `dlopen` was given.
    let name: String
    /// The `dlopen` handle, as an integer so the type is `Sendable` (it is an immutable opaque token).
    private let handle: UInt

    private init(name: String, handle: UInt) {
        self.name = name
        self.handle = handle
    }

    /// Opens `name` (a file path, or a bare name resolved by the dynamic loader). On failure returns `dlerror()`'s
    /// text. `global` makes the library's symbols available to libraries loaded later (RTLD_GLOBAL).
    static func open(_ name: String, global: Bool = false) -> Result<DynamicLibrary, DynamicLibraryError> {
        _ = dlerror()  // clear a stale message
        guard let handle = dlopen(name, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL)) else {
            return .failure(DynamicLibraryError(name: name, message: lastError() ?? "dlopen returned NULL"))
        }
        return .success(DynamicLibrary(name: name, handle: UInt(bitPattern: handle)))
    }

    /// The address of `symbol`, or nil when the library does not export it.
    func address(_ symbol: String) -> UnsafeMutableRawPointer? {
        dlsym(UnsafeMutableRawPointer(bitPattern: handle), symbol)
    }

    /// `symbol` as a C function of type `T` (a `@convention(c)` function type), or nil when it is not exported.
    func function<T>(_ symbol: String, as type: T.Type) -> T? {
        guard let pointer = address(symbol) else { return nil }
        return unsafeBitCast(pointer, to: T.self)
    }

    /// The file the dynamic loader mapped for `symbol` (`dladdr`'s `dli_fname`), which says where a library opened by
    /// bare name was actually found. Nil when it cannot be told.
    func path(containing symbol: String) -> String? {
        guard let address = address(symbol) else { return nil }
        return Self.objectPath(of: UnsafeRawPointer(address))
    }

    private typealias Dladdr = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Int32

    /// `dladdr` is not exported by the Glibc module (it needs `_GNU_SOURCE`), so it is looked up in libc itself.
    private static func objectPath(of address: UnsafeRawPointer) -> String? {
        guard let symbol = dlsym(nil, "dladdr") else { return nil }
        let dladdr = unsafeBitCast(symbol, to: Dladdr.self)
        // Dl_info: dli_fname, dli_fbase, dli_sname, dli_saddr.
        var info: (UnsafePointer<CChar>?, UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) = (
            nil, nil, nil, nil
        )
        let found = withUnsafeMutableBytes(of: &info) { dladdr(address, $0.baseAddress) }
        guard found != 0, let name = info.0 else { return nil }
        return String(cString: name)
    }

    private static func lastError() -> String? {
        guard let text = dlerror() else { return nil }
        return String(cString: text)
    }
}

/// Why `dlopen` failed: the name it was given and `dlerror()`'s text.
struct DynamicLibraryError: Error, Sendable, CustomStringConvertible {
    let name: String
    let message: String
    var description: String { message }
}

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
