#if HTTP
    import GPUBridge
    import Hummingbird
    import HummingbirdCore
    import HummingbirdTLS
    import Logging
    import NIOSSL
    import ServiceLifecycle

    /// The operations endpoint as a service: a Hummingbird HTTP/1.1 server for `OpsRouter`'s routes, run in the
    /// process's service group (it stops with the group's graceful shutdown).
    ///
    /// Owned by the command that serves it; `run()` is called once. It listens only when a process is asked to
    /// (`--http`), on the given address, plaintext or with TLS (`tls`: a PEM certificate chain and key, such as the
    /// node's cluster certificate); `onListening` receives the bound port (useful with port 0).
    public struct OpsServer: Service {
        let application: Application<RouterResponder<BasicRequestContext>>

        /// Throws `invalidArgument` naming the file when the certificate or key cannot be read as PEM.
        public init(
            sources: OpsSources, host: String, port: Int, tls: OpsTLS? = nil, logger: Logger,
            onListening: @escaping @Sendable (Int) async -> Void = { _ in }
        ) throws(GPUBridgeError) {
            let server: HTTPServerBuilder
            if let tls {
                let configuration = try tls.serverConfiguration()
                do { server = try .tls(.http1(), tlsConfiguration: configuration) } catch {
                    throw .invalidArgument(
                        name: "HTTP TLS", value: tls.certificatePath, limit: "a configuration NIOSSL accepts: \(error)")
                }
            } else {
                server = .http1()
            }
            application = Application(
                router: OpsRouter.make(sources), server: server,
                configuration: .init(address: .hostname(host, port: port), serverName: "gpubridge"),
                onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
                logger: logger)
        }

        public func run() async throws { try await application.run() }
    }

    extension OpsTLS {
        /// A TLS server configuration with this chain and key (TLS 1.2 or later; no client certificate asked for).
        func serverConfiguration() throws(GPUBridgeError) -> TLSConfiguration {
            let chain: [NIOSSLCertificate]
            do { chain = try NIOSSLCertificate.fromPEMFile(certificatePath) } catch {
                throw .invalidArgument(
                    name: "HTTP TLS certificate", value: certificatePath, limit: "a readable PEM certificate chain")
            }
            guard !chain.isEmpty else {
                throw .invalidArgument(
                    name: "HTTP TLS certificate", value: certificatePath, limit: "a PEM file with a certificate")
            }
            let key: NIOSSLPrivateKey
            do { key = try NIOSSLPrivateKey(file: keyPath, format: .pem) } catch {
                throw .invalidArgument(name: "HTTP TLS key", value: keyPath, limit: "a readable PEM private key")
            }
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = .tlsv12
            return configuration
        }
    }
#endif

/// The certificate chain and key (PEM files) the operations endpoint serves HTTPS with. A value; any thread.
public struct OpsTLS: Sendable, Hashable {
    public var certificatePath: String
    public var keyPath: String

    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}
