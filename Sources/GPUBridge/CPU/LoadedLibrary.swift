import Glibc

/// A shared library opened with `dlopen`, and lookups of its symbols: OpenBLAS for the CPU backend here, the CUDA
/// driver and NVRTC in `GPUBridgeCUDA` (hence `package`).
///
/// Ownership: the library stays loaded for the life of the process (it is never `dlclose`d), so every address looked
/// up in it stays valid. Thread safety: immutable; `dlopen` and `dlsym` are thread-safe (`dlerror` is per thread).
/// Cost: `open` is a `dlopen` (the first one of a library maps it and runs its initialisers); `address` is a `dlsym`.
package struct LoadedLibrary: Sendable {
    /// The name or path `dlopen` was given.
    package let name: String
    /// The `dlopen` handle, as an integer so the type is `Sendable` (it is an immutable opaque token).
    private let handle: UInt

    /// Opens `name` (a file path, or a bare name the dynamic loader resolves) with `RTLD_NOW`. On failure returns
    /// `dlerror()`'s text. `global` makes its symbols available to libraries loaded later (`RTLD_GLOBAL`).
    package static func open(_ name: String, global: Bool = false) -> Result<LoadedLibrary, LoadedLibraryError> {
        _ = dlerror()  // clear a stale message
        guard let handle = dlopen(name, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL)) else {
            return .failure(LoadedLibraryError(name: name, message: lastError() ?? "dlopen returned NULL"))
        }
        return .success(LoadedLibrary(name: name, handle: UInt(bitPattern: handle)))
    }

    private init(name: String, handle: UInt) {
        self.name = name
        self.handle = handle
    }

    /// The address of `symbol`, or nil when the library does not export it.
    package func address(_ symbol: String) -> UnsafeMutableRawPointer? {
        dlsym(UnsafeMutableRawPointer(bitPattern: handle), symbol)
    }

    /// `symbol` as a C function of type `T` (a `@convention(c)` function type), or nil when it is not exported.
    package func function<T>(_ symbol: String, as type: T.Type) -> T? {
        guard let pointer = address(symbol) else { return nil }
        return unsafeBitCast(pointer, to: T.self)
    }

    /// The file the dynamic loader mapped for `symbol` (`dladdr`'s `dli_fname`): where a library opened by bare name
    /// was found. Nil when it cannot be told.
    package func path(containing symbol: String) -> String? {
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
package struct LoadedLibraryError: Error, Sendable, CustomStringConvertible {
    package let name: String
    package let message: String
    package var description: String { message }
}
