import ArgumentParser
import Foundation
import GPUBridgeCluster

/// `gpubridge certs`: a cluster CA and certificates it signed, for `gpubridge node --tls-cert/--tls-key/--tls-ca`.
struct CertsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Make a cluster certificate authority and node certificates for mutual TLS.",
        discussion: """
            Writes ca.pem and ca-key.pem (the cluster CA), then NAME.pem and NAME-key.pem for each --name (node \
            certificates: TLS server and client) and each --client (client-only certificates: a process holding one \
            can call actors but cannot serve as a node), signed by the CA, with --address as IP subject alternative \
            names, into --out. Start each node with --tls-cert NAME.pem --tls-key NAME-key.pem --tls-ca ca.pem. Keys are P-256 and written readable by the owner only; \
            keep ca-key.pem off the nodes.
            """
    )

    @Option(name: .long, help: "Folder to write into (created if missing).")
    var out: String

    @Option(name: .long, parsing: .upToNextOption, help: "Names to issue node certificates for (default: node).")
    var name: [String] = ["node"]

    @Option(
        name: .long, parsing: .upToNextOption, help: "Names to issue client-only certificates for (default: client).")
    var client: [String] = ["client"]

    @Option(name: .long, parsing: .upToNextOption, help: "IP addresses the certificates name (default: 127.0.0.1).")
    var address: [String] = ["127.0.0.1"]

    @Option(name: .long, help: "Days the certificates are valid (1...3650).")
    var days = 365

    func run() async throws {
        guard (1...3650).contains(days) else { throw ValidationError("invalid --days \(days); expected 1...3650") }
        do {
            let authority = try ClusterCertificateAuthority(validity: .seconds(days * 86_400))
            let paths = try authority.write(
                to: out, names: name, clients: client, addresses: address, validity: .seconds(days * 86_400))
            for path in paths { print(path) }
        } catch {
            throw ValidationError("gpubridge certs: \(error)")
        }
    }
}
