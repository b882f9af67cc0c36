import Crypto
import Foundation
import GPUBridge
import SwiftASN1
import X509

/// Makes the certificates of a cluster's mutual TLS: one certificate authority (the cluster's), and for each node or
/// client a certificate it signed (P-256 keys, ECDSA with SHA-256). Every node trusts only the cluster CA, so a
/// process without a certificate from it can neither join nor call (see `ClusterSecurity.mutualTLS`).
///
/// `gpubridge certs` writes a set to a folder; tests make their own. For production, any CA works (openssl, a
/// corporate PKI): nodes need a PEM chain, its key and the CA certificate.
///
/// An immutable value: it holds the CA's private key in memory for as long as a copy lives, and any task may use it
/// concurrently. Each `init` and `issue` generates one P-256 key and signs one certificate (well under a millisecond
/// of CPU); `write` does that per name and writes two files each.
public struct ClusterCertificateAuthority: Sendable {
    /// The CA certificate, PEM: every node's trust root.
    public let certificatePEM: String
    /// The CA's private key, PEM (keep it off the nodes).
    public let privateKeyPEM: String
    let certificate: Certificate
    let key: P256.Signing.PrivateKey

    /// A new CA named `name`, valid from an hour ago for `validity`.
    public init(name: String = "GPUBridge cluster CA", validity: Duration = .seconds(86_400 * 365))
        throws(GPUBridgeError)
    {
        let key = P256.Signing.PrivateKey()
        let subject: DistinguishedName
        let certificate: Certificate
        do {
            subject = try DistinguishedName {
                CommonName(name); OrganizationName("GPUBridge")
            }
            let now = Date()
            certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
                notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(validity.seconds),
                issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(hash: .init(key.publicKey))
                },
                issuerPrivateKey: .init(key))
            certificatePEM = try certificate.serializeAsPEM().pemString
        } catch {
            throw .backendFailure(backend: "x509", call: "make CA certificate", code: -1, message: "\(error)")
        }
        self.certificate = certificate
        self.key = key
        privateKeyPEM = key.pemRepresentation
    }

    /// A certificate for `name` signed by this CA, with `addresses` (IPv4/IPv6 literals) and `hostNames` as subject
    /// alternative names. A `.node` certificate serves and calls (TLS server and client usage: nodes are both); a
    /// `.client` certificate only calls (client usage alone), so TLS peers refuse it as a server and a process holding
    /// it cannot be admitted as a node. Returns (certificate, key) PEM.
    public func issue(
        name: String, role: CertificateRole = .node, addresses: [String] = ["127.0.0.1"],
        hostNames: [String] = ["localhost"], validity: Duration = .seconds(86_400 * 365)
    ) throws(GPUBridgeError) -> (certificatePEM: String, privateKeyPEM: String) {
        guard !name.isEmpty else {
            throw .invalidArgument(name: "name", value: "\"\"", limit: "a non-empty common name")
        }
        var names: [GeneralName] = hostNames.map { .dnsName($0) }
        for address in addresses {
            guard let bytes = Self.addressBytes(address) else {
                throw .invalidArgument(name: "addresses", value: address, limit: "IPv4 or IPv6 literals")
            }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        let key = P256.Signing.PrivateKey()
        do {
            let now = Date()
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
                notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(validity.seconds),
                issuer: self.certificate.subject,
                subject: try DistinguishedName {
                    CommonName(name); OrganizationName("GPUBridge")
                },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true, keyAgreement: true))
                    try ExtendedKeyUsage(role == .node ? [.serverAuth, .clientAuth] : [.clientAuth])
                    SubjectAlternativeNames(names)
                    AuthorityKeyIdentifier(
                        keyIdentifier: try self.certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
                },
                issuerPrivateKey: .init(self.key))
            return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
        } catch {
            throw .backendFailure(backend: "x509", call: "issue certificate for \(name)", code: -1, message: "\(error)")
        }
    }

    /// Writes `ca.pem`, `ca-key.pem`, and `NAME.pem` + `NAME-key.pem` for each of `names` (node certificates) and of
    /// `clients` (client-only certificates) into `folder` (created if missing; keys are written readable by the owner
    /// only). Returns the paths written.
    @discardableResult
    public func write(
        to folder: String, names: [String], clients: [String] = [], addresses: [String] = ["127.0.0.1"],
        validity: Duration = .seconds(86_400 * 365)
    ) throws(GPUBridgeError) -> [String] {
        for name in names + clients where name.isEmpty || name.contains("/") || name == "ca" || name.hasPrefix(".") {
            throw .invalidArgument(name: "names", value: "\"\(name)\"", limit: "file-name-safe names other than \"ca\"")
        }
        var written: [String] = []
        func put(_ text: String, _ file: String, secret: Bool) throws(GPUBridgeError) {
            let path = (folder as NSString).appendingPathComponent(file)
            let created = FileManager.default.createFile(
                atPath: path, contents: Data(text.utf8),
                attributes: [.posixPermissions: secret ? 0o600 : 0o644])
            guard created else { throw .invalidArgument(name: "folder", value: folder, limit: "a writable folder") }
            written.append(path)
        }
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw .invalidArgument(name: "folder", value: folder, limit: "a folder that can be created (\(error))")
        }
        try put(certificatePEM, "ca.pem", secret: false)
        try put(privateKeyPEM, "ca-key.pem", secret: true)
        for (name, role) in names.map({ ($0, CertificateRole.node) }) + clients.map({ ($0, CertificateRole.client) }) {
            let (certificate, key) = try issue(name: name, role: role, addresses: addresses, validity: validity)
            try put(certificate, "\(name).pem", secret: false)
            try put(key, "\(name)-key.pem", secret: true)
        }
        return written
    }

    static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

/// What a certificate from `ClusterCertificateAuthority` may do. A value; any thread.
public enum CertificateRole: String, Sendable, Hashable {
    /// Serves and calls (extended key usage: TLS server and client).
    case node
    /// Only calls (extended key usage: TLS client): it cannot serve a node.
    case client
}
