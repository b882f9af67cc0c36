#if HTTP
    import Hummingbird
    import Logging
    import ServiceLifecycle

    /// The operations endpoint as a service: a Hummingbird HTTP/1.1 server for `OpsRouter`'s routes, run in the
    /// process's service group (it stops with the group's graceful shutdown).
    ///
    /// Owned by the command that serves it; `run()` is called once. It listens only when a process is asked to
    /// (`--http`), plaintext on the given address; `onListening` receives the bound port (useful with port 0).
    public struct OpsServer: Service {
        let application: Application<RouterResponder<BasicRequestContext>>

        public init(
            sources: OpsSources, host: String, port: Int, logger: Logger,
            onListening: @escaping @Sendable (Int) async -> Void = { _ in }
        ) {
            application = Application(
                router: OpsRouter.make(sources),
                configuration: .init(address: .hostname(host, port: port), serverName: "gpubridge"),
                onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
                logger: logger)
        }

        public func run() async throws { try await application.run() }
    }
#endif
