import Glibc
import Synchronization

private let temporaryCounter = Atomic<Int>(0)

/// Minimal POSIX file helpers for the kernel cache (no Foundation in the core).
enum FileStore {
    static func errorMessage(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }

    /// Creates `path` and its parents (like `mkdir -p`).
    static func makeDirectories(_ path: String) throws(GPUBridgeError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0, errno != EEXIST {
                let code = errno
                throw .io(path: current, operation: "mkdir", errno: code, message: errorMessage(code))
            }
        }
    }

    /// Reads a whole file, or nil if it does not exist.
    static func read(_ path: String) throws(GPUBridgeError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return nil }
            throw .io(path: path, operation: "open", errno: code, message: errorMessage(code))
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                throw .io(path: path, operation: "read", errno: code, message: errorMessage(code))
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed, then renamed over `path`.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(GPUBridgeError) {
        let serial = temporaryCounter.add(1, ordering: .relaxed).newValue
        let temporary = "\(path).tmp.\(getpid()).\(serial)"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 {
            let code = errno
            throw .io(path: temporary, operation: "create", errno: code, message: errorMessage(code))
        }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                close(fd)
                unlink(temporary)
                throw .io(path: temporary, operation: "write", errno: code, message: errorMessage(code))
            }
            written += n
        }
        fsync(fd)
        close(fd)
        if rename(temporary, path) != 0 {
            let code = errno
            unlink(temporary)
            throw .io(path: path, operation: "rename", errno: code, message: errorMessage(code))
        }
    }

    static func remove(_ path: String) { unlink(path) }

    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let s = String(cString: value)
        return s.isEmpty ? nil : s
    }
}
