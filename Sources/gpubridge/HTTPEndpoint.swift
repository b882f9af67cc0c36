import ArgumentParser
import GPUBridgeOps
import Logging
import ServiceLifecycle

/// `--http HOST:PORT`: where a process serves its operations endpoint (metrics, health probes, JSON API).
struct HTTPAddress: Sendable, Hashable {
    var host: String
    var port: Int

    /// Parses `host:port` (port 0...65535; 0 picks a free one), naming the option in the error.
    init(parsing text: String, option: String = "--http") throws {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65_535).contains(port), !text[..<colon].isEmpty
        else {
            throw ValidationError("invalid \(option) \(text); expected host:port with port 0...65535")
        }
        host = String(text[..<colon])
        self.port = port
    }
}

enum HTTPEndpoint {
    /// The operations endpoint as a service for the process's group; it prints
    /// `{"event":"http","url":"http(s)://host:port"}` once listening. With `tls`, HTTPS with that certificate and key.
    /// Refused when the CLI was built without the HTTP trait, or when the certificate or key cannot be read.
    static func service(sources: OpsSources, address: HTTPAddress, tls: OpsTLS? = nil, logger: Logger) throws
        -> any Service
    {
        #if HTTP
            let scheme = tls == nil ? "http" : "https"
            do {
                return try OpsServer(
                    sources: sources, host: address.host, port: address.port, tls: tls, logger: logger
                ) { port in
                    NodeOutput.line(#"{"event":"http","url":"\#(scheme)://\#(address.host):\#(port)"}"#)
                }
            } catch { throw ValidationError("invalid HTTP TLS settings: \(error)") }
        #else
            throw ValidationError(
                "--http is not available: this gpubridge was built without the HTTP trait (swift build --traits HTTP)")
        #endif
    }
}
