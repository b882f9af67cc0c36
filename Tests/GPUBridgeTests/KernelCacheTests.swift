import GPUBridge
import Glibc
import Testing

@Suite("Kernel cache")
struct KernelCacheTests {
    func key(source: String = "kernel text", flags: [String] = ["-O3"]) -> KernelCache.Key {
        KernelCache.Key(
            backend: "opencl", architecture: "test-arch", compiler: "test 1.0", flags: flags,
            language: "opencl-c", entryPoint: "k", source: source)
    }

    final class Builds {
        var count = 0
    }

    func build(_ builds: Builds, _ bytes: [UInt8]) -> () throws(GPUBridgeError) -> KernelBinary {
        { () throws(GPUBridgeError) in
            builds.count += 1
            return KernelBinary(format: "test", bytes: bytes)
        }
    }

    @Test("a second compile hits memory; a fresh cache on the same folder hits disk")
    func hits() throws {
        let folder = temporaryFolder("cache-hits")
        defer { removeFolder(folder) }
        let builds = Builds()
        let cache = KernelCache(directory: folder)
        let first = try cache.binary(for: key(), build: build(builds, [1, 2, 3]))
        let second = try cache.binary(for: key(), build: build(builds, [9]))
        #expect(first == second)
        #expect(builds.count == 1)
        #expect(cache.statistics.memoryHits == 1)
        #expect(cache.statistics.diskWrites == 1)

        let fresh = KernelCache(directory: folder)
        let third = try fresh.binary(for: key(), build: build(builds, [9]))
        #expect(third.bytes == [1, 2, 3])
        #expect(third.format == "test")
        #expect(fresh.statistics.diskHits == 1)
        #expect(builds.count == 1)
    }

    @Test("a changed option or source misses")
    func misses() throws {
        let builds = Builds()
        let cache = KernelCache(directory: nil)
        _ = try cache.binary(for: key(), build: build(builds, [1]))
        _ = try cache.binary(for: key(flags: ["-O3", "-DFOO=1"]), build: build(builds, [2]))
        _ = try cache.binary(for: key(source: "other"), build: build(builds, [3]))
        #expect(builds.count == 3)
        #expect(cache.statistics.misses == 3)
        #expect(key().digest != key(flags: ["-O3", "-DFOO=1"]).digest)
        // Fields are length-prefixed: moving text between fields changes the key.
        let a = KernelCache.Key(
            backend: "ab", architecture: "c", compiler: "", flags: [], language: "", entryPoint: "", source: "")
        let b = KernelCache.Key(
            backend: "a", architecture: "bc", compiler: "", flags: [], language: "", entryPoint: "", source: "")
        #expect(a.digest != b.digest)
    }

    @Test("a corrupt or truncated disk entry is detected and rebuilt", arguments: ["flip", "truncate", "garbage"])
    func corrupt(damage: String) throws {
        let folder = temporaryFolder("cache-corrupt-\(damage)")
        defer { removeFolder(folder) }
        let builds = Builds()
        _ = try KernelCache(directory: folder).binary(for: key(), build: build(builds, Array(repeating: 7, count: 100)))
        let path = KernelCache(directory: folder).path(forDigest: key().digest)!
        var bytes = try readFile(path)
        switch damage {
        case "flip": bytes[bytes.count - 10] ^= 0xFF
        case "truncate": bytes.removeLast(5)
        default: bytes = Array("not a cache entry".utf8)
        }
        try writeFile(path, bytes)

        let cache = KernelCache(directory: folder)
        let rebuilt = try cache.binary(for: key(), build: build(builds, Array(repeating: 8, count: 100)))
        #expect(rebuilt.bytes == Array(repeating: 8, count: 100))
        #expect(builds.count == 2)
        #expect(cache.statistics.corruptEntries == 1)
        // The rebuilt entry is whole again.
        let again = KernelCache(directory: folder)
        #expect(try again.binary(for: key(), build: build(builds, [0])).bytes == Array(repeating: 8, count: 100))
        #expect(again.statistics.diskHits == 1)
    }

    @Test("SHA-256 matches the FIPS 180-4 examples")
    func sha256() {
        #expect(
            SHA256.hex(SHA256.hash(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hex(SHA256.hash([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let long = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(SHA256.hex(SHA256.hash(long)) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var streamed = SHA256()
        for chunk in stride(from: 0, to: long.count, by: 7) {
            streamed.update(long[chunk..<min(long.count, chunk + 7)])
        }
        #expect(SHA256.hex(streamed.finalize()) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }
}

func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw GPUBridgeError.io(path: path, operation: "open", errno: errno, message: "") }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0o644)
    guard fd >= 0 else { throw GPUBridgeError.io(path: path, operation: "open", errno: errno, message: "") }
    defer { close(fd) }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, bytes.count) }
}

func removeFolder(_ path: String) {
    if let dir = opendir(path) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(dir)
    }
    rmdir(path)
}
