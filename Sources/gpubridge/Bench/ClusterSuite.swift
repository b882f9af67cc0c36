import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import GRPCCore
import GRPCNIOTransportHTTP2

/// The reference for the cluster benchmark: a plain grpc-swift-2 unary echo of raw bytes, nothing of ours on the path.
struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { [UInt8]($0) }
    }
}

struct PlainEchoService: RegistrableRPCService {
    static let method = MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Echo")

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(forMethod: Self.method, deserializer: RawBytes(), serializer: RawBytes()) { request, _ in
            var message: [UInt8] = []
            for try await m in request.messages { message = m }
            return StreamingServerResponse(single: ServerResponse(message: message))
        }
    }
}

extension Suites {
    /// A remote actor call on loopback (a client node calling `EchoActor.echo` hosted by another node, over the
    /// cluster's gRPC transport) next to a plain grpc-swift-2 unary echo of the same bytes, interleaved in one run:
    /// round-trip latency for a small payload and for a large buffer, and throughput with calls in flight. Once in
    /// plaintext and once with mutual TLS, the same security on both sides each time, so the ratio is the actor layer
    /// (directory, routing, invocation encoding, framing, chunking).
    func cluster(largeBytes: Int = 64 << 20) async throws -> [Figure] {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "gpubridge-bench-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try ClusterCertificateAuthority(name: "bench CA").write(to: folder, names: ["node"])
        let mtls = ClusterSecurity.mutualTLS(
            certificate: "\(folder)/node.pem", privateKey: "\(folder)/node-key.pem",
            trustRoots: "\(folder)/ca.pem")
        var figures: [Figure] = []
        for (label, security) in [("plaintext", ClusterSecurity.plaintext), ("mTLS", mtls)] {
            figures += try await cluster(largeBytes: largeBytes, security: security, label: label)
        }
        return figures
    }

    private func cluster(largeBytes: Int, security: ClusterSecurity, label: String) async throws -> [Figure] {
        let plainLimit = largeBytes + (1 << 20)
        // The plain server and client, with their message limits raised to carry the large buffer in one message.
        // Flushes coalesced within one event loop tick, as the cluster's transport does (GRPCNodeTransport).
        var serverConfig = HTTP2ServerTransport.Posix.Config.defaults
        serverConfig.connection.flushCoalescing = .init(maxFlushDelay: .zero, maxBytes: 64 * 1024)
        serverConfig.rpc.maxRequestPayloadSize = plainLimit
        serverConfig.http2.maxFrameSize = 1 << 20
        serverConfig.http2.targetWindowSize = 16 << 20
        var clientConfig = HTTP2ClientTransport.Posix.Config.defaults
        clientConfig.connection.flushCoalescing = .init(maxFlushDelay: .zero, maxBytes: 64 * 1024)
        clientConfig.http2.maxFrameSize = 1 << 20
        clientConfig.http2.targetWindowSize = 16 << 20
        let serverSecurity: HTTP2ServerTransport.Posix.TransportSecurity
        let clientSecurity: HTTP2ClientTransport.Posix.TransportSecurity
        switch security {
        case .plaintext:
            serverSecurity = .plaintext
            clientSecurity = .plaintext
        case let .mutualTLS(certificate, key, roots):
            serverSecurity = .mTLS(
                certificateChain: [.file(path: certificate, format: .pem)], privateKey: .file(path: key, format: .pem)
            ) {
                $0.trustRoots = .certificates([.file(path: roots, format: .pem)])
                $0.clientCertificateVerification = .noHostnameVerification
            }
            clientSecurity = .mTLS(
                certificateChain: [.file(path: certificate, format: .pem)], privateKey: .file(path: key, format: .pem)
            ) {
                $0.trustRoots = .certificates([.file(path: roots, format: .pem)])
                $0.serverCertificateVerification = .noHostnameVerification
            }
        }
        let serverTransport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: serverSecurity,
            config: serverConfig)
        let server = GRPCServer(transport: serverTransport, services: [PlainEchoService()])
        let serverTask = Task { try? await server.serve() }
        guard let port = try await serverTransport.listeningAddress.ipv4?.port else {
            server.beginGracefulShutdown()
            throw GPUBridgeError.backendFailure(backend: "grpc", call: "listen", code: -1, message: "no IPv4 address")
        }
        let plain = GRPCClient(
            transport: try HTTP2ClientTransport.Posix(
                target: .ipv4(address: "127.0.0.1", port: port),
                transportSecurity: clientSecurity, config: clientConfig))
        let clientTask = Task { try? await plain.runConnections() }
        defer {
            plain.beginGracefulShutdown()
            server.beginGracefulShutdown()
        }
        let callOptions: CallOptions = {
            var options = CallOptions.defaults
            options.maxRequestMessageBytes = plainLimit
            options.maxResponseMessageBytes = plainLimit
            return options
        }()
        @Sendable func plainEcho(_ bytes: [UInt8]) async throws -> [UInt8] {
            try await plain.unary(
                request: ClientRequest(message: bytes), descriptor: PlainEchoService.method, serializer: RawBytes(),
                deserializer: RawBytes(), options: callOptions
            ) { try $0.message }
        }

        // Two clusters, each of one hosting node and one client node with in-memory membership, on loopback: one over
        // gRPC (GRPCNodeTransport), one over the TCP transport (TCPNodeTransport).
        func system() throws -> EmbeddedActorSystem {
            var options = BridgeOptions()
            options.cacheDirectory = nil
            options.backendOrder = [.cpu]
            let system = try EmbeddedActorSystem(
                bridge: try Bridge(options: options, backends: [CPUBackend()]), storage: InMemoryActorStorage())
            try system.register(EchoActor.self, as: "echo") { EchoActor(actorSystem: $0) }
            return system
        }
        func pair(_ transport: () throws -> any NodeTransport) throws -> (host: ClusterNode, caller: ClusterNode) {
            let membership = InMemoryMembershipTable(), directory = InMemoryActorDirectory(membership: membership)
            var nodeOptions = ClusterOptions()
            nodeOptions.roundInterval = .seconds(1)
            var clientOptions = nodeOptions
            clientOptions.role = .client
            let host = try ClusterNode(
                system: try system(), membership: membership, directory: directory, transport: try transport(),
                options: nodeOptions)
            let caller = try ClusterNode(
                system: try system(), membership: membership, directory: directory, transport: try transport(),
                options: clientOptions)
            return (host, caller)
        }
        let (host, caller) = try pair { try GRPCNodeTransport(security: security) }
        let (tcpHost, tcpCaller) = try pair { try TCPNodeTransport(security: security) }

        var random = SplitMix64(seed: 77)
        let small = (0..<64).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let large = [UInt8](unsafeUninitializedCapacity: largeBytes) { out, count in
            for i in 0..<largeBytes { out[i] = UInt8(truncatingIfNeeded: (i &* 2_654_435_761) >> 7) }
            count = largeBytes
        }
        let figures: [Figure]
        do {
            for node in [host, caller, tcpHost, tcpCaller] { try await node.start() }
            let echo = try caller.system.actor(EchoActor.self, key: "bench")
            let tcpEcho = try tcpCaller.system.actor(EchoActor.self, key: "bench")
            var measured = try await clusterFigures(
                small: small, large: large, security: label, actorEcho: { try await echo.echo($0) },
                tcpEcho: { try await tcpEcho.echo($0) }, plainEcho: plainEcho)
            if case .plaintext = security { measured += try await transportFloor(small: small, tickEcho: plainEcho) }
            figures = measured
        } catch {
            for node in [caller, host, tcpCaller, tcpHost] { await node.stop() }
            throw error
        }
        for node in [caller, host, tcpCaller, tcpHost] { await node.stop() }
        plain.beginGracefulShutdown()
        server.beginGracefulShutdown()
        await clientTask.value
        await serverTask.value
        return figures
    }

    private func clusterFigures(
        small: [UInt8], large: [UInt8], security: String,
        actorEcho: @escaping @Sendable ([UInt8]) async throws -> [UInt8],
        tcpEcho: @escaping @Sendable ([UInt8]) async throws -> [UInt8],
        plainEcho: @escaping @Sendable ([UInt8]) async throws -> [UInt8]
    ) async throws -> [Figure] {
        let clock = ContinuousClock()
        var figures: [Figure] = []
        for (label, payload, rounds) in [
            ("64 B", small, max(repeats * 20, 200)), ("\(large.count >> 20) MiB", large, repeats),
        ] {
            progress.say("cluster round trip \(label), \(security)")
            var actorOK = try await actorEcho(payload) == payload
            var tcpOK = try await tcpEcho(payload) == payload
            var plainOK = try await plainEcho(payload) == payload
            var actorSamples: [Duration] = [], tcpSamples: [Duration] = [], plainSamples: [Duration] = []
            // Interleaved, so all see the same machine state.
            for _ in 0..<rounds {
                var t = clock.now
                let a = try await actorEcho(payload)
                actorSamples.append(clock.now - t)
                t = clock.now
                let c = try await tcpEcho(payload)
                tcpSamples.append(clock.now - t)
                t = clock.now
                let p = try await plainEcho(payload)
                plainSamples.append(clock.now - t)
                actorOK = actorOK && a.count == payload.count
                tcpOK = tcpOK && c.count == payload.count
                plainOK = plainOK && p.count == payload.count
            }
            actorOK = try await actorEcho(payload) == payload && actorOK
            tcpOK = try await tcpEcho(payload) == payload && tcpOK
            let unit = payload.count > 1 << 20 ? "ms" : "µs"
            let scale: (Double) -> Double = unit == "ms" ? { $0 * 1e3 } : { $0 * 1e6 }
            let actor = loopbackFigure(
                "remote actor call, echo \(label)", security: security, unit: unit, size: payload.count,
                samples: actorSamples, verified: actorOK, note: "round trip", rate: scale)
            let plain = loopbackFigure(
                "plain gRPC unary, echo \(label)", security: security, unit: unit, size: payload.count,
                samples: plainSamples, verified: plainOK, note: "round trip", rate: scale)
            let tcp = loopbackFigure(
                "remote actor call over TCP, echo \(label)", security: security, unit: unit, size: payload.count,
                samples: tcpSamples, verified: tcpOK, note: "round trip, TCPNodeTransport", rate: scale)
            figures += [
                actor, tcp, plain,
                ratio(actor, over: plain, name: "actor / plain gRPC, \(label)", note: "target <= 1.20"),
                ratio(tcp, over: actor, name: "actor over TCP / actor over gRPC, \(label)"),
            ]
        }

        // Throughput: 32 calls in flight, 4 000 calls per sample.
        progress.say("cluster throughput, \(security)")
        let inFlight = 32, perSample = 4000
        func throughput(_ call: @escaping @Sendable ([UInt8]) async throws -> [UInt8]) async throws -> (Duration, Bool)
        {
            let start = clock.now
            let ok = try await withThrowingTaskGroup(of: Bool.self) { group in
                for worker in 0..<inFlight {
                    group.addTask {
                        var ok = true
                        for _ in stride(from: worker, to: perSample, by: inFlight) {
                            ok = try await call(small) == small && ok
                        }
                        return ok
                    }
                }
                return try await group.reduce(true) { $0 && $1 }
            }
            return (clock.now - start, ok)
        }
        var actorSamples: [Duration] = [], tcpSamples: [Duration] = [], plainSamples: [Duration] = []
        var actorOK = true, tcpOK = true, plainOK = true
        _ = try await throughput(actorEcho)
        _ = try await throughput(tcpEcho)
        _ = try await throughput(plainEcho)
        for _ in 0..<max(3, repeats / 2) {
            let (a, aok) = try await throughput(actorEcho)
            let (c, cok) = try await throughput(tcpEcho)
            let (p, pok) = try await throughput(plainEcho)
            actorSamples.append(a)
            tcpSamples.append(c)
            plainSamples.append(p)
            actorOK = actorOK && aok
            tcpOK = tcpOK && cok
            plainOK = plainOK && pok
        }
        let perSecond: (Double) -> Double = { Double(perSample) / $0 }
        let actor = loopbackFigure(
            "remote actor calls, 64 B, \(inFlight) in flight", security: security, unit: "calls/s",
            size: perSample, samples: actorSamples, verified: actorOK, rate: perSecond)
        let plain = loopbackFigure(
            "plain gRPC unary, 64 B, \(inFlight) in flight", security: security, unit: "calls/s",
            size: perSample, samples: plainSamples, verified: plainOK, rate: perSecond)
        let tcp = loopbackFigure(
            "remote actor calls over TCP, 64 B, \(inFlight) in flight", security: security, unit: "calls/s",
            size: perSample, samples: tcpSamples, verified: tcpOK, rate: perSecond)
        figures += [
            actor, tcp, plain,
            ratio(actor, over: plain, name: "actor / plain gRPC, calls/s", note: "target >= 0.83 (1 / 1.20)"),
            ratio(tcp, over: actor, name: "actor over TCP / actor over gRPC, calls/s"),
        ]
        return figures
    }

    private func loopbackFigure(
        _ name: String, security: String, unit: String, size: Int, samples: [Duration], verified: Bool,
        note: String? = nil, rate: (Double) -> Double
    ) -> Figure {
        let values = samples.map { rate($0.seconds) }
        return Figure(
            suite: "cluster", name: name, device: security, deviceName: "loopback 127.0.0.1, \(security)", unit: unit,
            median: values.median, min: values.min() ?? .nan, max: values.max() ?? .nan, samples: values.count,
            size: size, sizeUnit: unit == "calls/s" ? "calls" : "bytes", verified: verified, note: note)
    }
}
