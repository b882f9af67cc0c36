#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Readable names for distributed call targets, whose identifiers are mangled Swift symbols
/// (`$s15GPUBridgeActors16VectorIndexActorC5query_1k...FTE`). Used for span attributes and logs; pure, any thread.
/// Costs one call into the Swift runtime's demangler and one allocation (freed here).
public enum CallTargetName {
    /// `Type.method` (`VectorIndexActor.query`) for a mangled distributed target, or `identifier` unchanged when the
    /// runtime cannot demangle it (a target that was not mangled, or bytes from a peer that are not a symbol).
    public static func readable(_ identifier: String) -> String {
        guard identifier.hasPrefix("$s"), let full = demangled(identifier) else { return identifier }
        var name = Substring(full)
        for prefix in ["distributed thunk ", "distributed accessor for "] where name.hasPrefix(prefix) {
            name = name.dropFirst(prefix.count)
        }
        if let paren = name.firstIndex(of: "(") { name = name[..<paren] }
        let parts = name.split(separator: ".")
        guard parts.count >= 2 else { return identifier }
        return parts.suffix(2).joined(separator: ".")
    }

    /// The runtime's full demangling of `symbol`, or nil.
    static func demangled(_ symbol: String) -> String? {
        symbol.withCString { pointer -> String? in
            guard let result = swiftDemangle(pointer, strlen(pointer), nil, nil, 0) else { return nil }
            defer { free(result) }
            return String(cString: result)
        }
    }
}

/// The Swift runtime's demangler (exported by libswiftCore on every platform): returns a malloc'd C string or nil.
@_silgen_name("swift_demangle")
private func swiftDemangle(
    _ mangled: UnsafePointer<CChar>?, _ length: Int, _ output: UnsafeMutablePointer<CChar>?,
    _ outputSize: UnsafeMutablePointer<Int>?, _ flags: UInt32
) -> UnsafeMutablePointer<CChar>?
