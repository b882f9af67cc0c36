import Foundation
import GPUBridge

/// How node-to-node traffic is secured.
public enum ClusterSecurity: Sendable, Hashable {
    /// Mutual TLS: every node presents `certificate` (PEM, signed by the cluster CA) with `privateKey` (PEM), and
    /// accepts only peers whose certificate chains to `trustRoots` (the cluster CA, PEM). Host names are not checked
    /// (nodes are addressed by IP); the chain is. A process without a certificate of the cluster's CA can neither
    /// join nor call an actor.
    case mutualTLS(certificate: String, privateKey: String, trustRoots: String)
    /// No encryption and no authentication: local development only, and only when asked for explicitly.
    case plaintext

    /// Checks the files exist and are readable.
    public func validate() throws(GPUBridgeError) {
        guard case let .mutualTLS(certificate, key, roots) = self else { return }
        for (name, path) in [("tls certificate", certificate), ("tls private key", key), ("tls trust roots", roots)] {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw .invalidArgument(name: name, value: path, limit: "a readable PEM file")
            }
        }
    }
}
