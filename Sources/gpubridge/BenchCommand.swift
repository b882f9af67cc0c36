import ArgumentParser
import Foundation
import GPUBridge

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure GPUBridge: medians of repeated runs, verified, per device.",
        discussion: """
            Suites: stream (copy, mul, add, triad, dot in float32/float64; GB/s as bytes read + written), launch \
            (launch+wait latency, queued launches per second), alloc (pooled vs raw allocate+release), transfer \
            (host<->device, pageable vs pinned), compile (cold vs memory vs disk cache), kernels (each built-in \
            operation end to end), batching (10 000 small requests, batched vs one launch each), actors (an actor \
            call against the same request made directly; a batch actor, one launch per request against coalesced), \
            cluster (a remote actor call over the cluster's gRPC transport on loopback against a plain grpc-swift-2 \
            unary call of the same bytes, in plaintext and with mutual TLS: 64 B and --size bytes (default 64 MiB) round \
            trips, calls per second with 32 in flight; run once, not per device), durability (vector index upserts of \
            100 x 384 journaled to SQLite against the same without a journal, 1 and 16 in flight; then recovery of \
            --size journaled rows, default 1 000 000), twins (each built-in kernel's Swift twin, written with \
            @GPUKernel, against the built-in: the same launch, launched alternately; medians and the ratio Swift / \
            hand-written; needs the SwiftKernels trait), all. scripts/compare-peers runs these next to numpy and \
            pyopencl.
            """
    )

    static let suites = [
        "stream", "launch", "alloc", "transfer", "compile", "kernels", "batching", "actors", "durability", "cluster",
        "twins", "all",
    ]

    @Argument(
        help:
            "Suite: stream, launch, alloc, transfer, compile, kernels, batching, actors, durability, cluster, twins or all."
    )
    var suite: String

    @Option(name: .long, help: "Backend: auto, all, cpu, opencl or cuda.")
    var backend: String = "all"

    @Option(
        name: .long,
        help:
            "Problem size (elements for stream and kernels, largest bytes for transfer, rows recovered for durability)."
    )
    var size: Int?

    @Option(name: .long, help: "Samples per figure after one warm-up (1...1000).")
    var `repeat`: Int = 10

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        guard Self.suites.contains(suite) else {
            throw ValidationError("unknown suite '\(suite)'; available: \(Self.suites.joined(separator: ", "))")
        }
        #if !SwiftKernels
            if suite == "twins" {
                throw ValidationError("suite 'twins' needs the SwiftKernels trait (the @GPUKernel macro)")
            }
        #endif
        guard backend == "all" || BackendChoice(rawValue: backend) != nil else {
            throw ValidationError("invalid --backend '\(backend)'; expected all, auto, cpu, opencl or cuda")
        }
        guard (1...1000).contains(`repeat`) else {
            throw ValidationError("invalid --repeat \(`repeat`); expected 1...1000")
        }
        if let size, size < 1024 || size > Int(Int32.max) {
            throw ValidationError("invalid --size \(size); expected 1024...\(Int32.max)")
        }
    }

    func run() async throws {
        let (reports, devices, _) = Backends.discover()
        let chosen =
            backend == "all" ? devices : try BackendChoice(rawValue: backend)!.select(from: devices, reports: reports)
        let suites = Suites(repeats: `repeat`, size: size)
        let names = suite == "all" ? Array(Self.suites.dropLast()) : [suite]
        var figures: [Figure] = []
        for device in chosen {
            for name in names where name != "cluster" {
                switch name {
                case "stream": figures += try await suites.stream(device)
                case "launch": figures += try await suites.launch(device)
                case "alloc": figures += try await suites.alloc(device)
                case "transfer": figures += try await suites.transfer(device)
                case "compile": figures += try await suites.compile(device)
                case "kernels": figures += try await suites.kernels(device)
                case "actors": figures += try await suites.actors(device)
                case "durability": figures += try await suites.durability(device)
                case "twins": figures += try await suites.twins(device)
                default: figures += try await suites.batching(device)
                }
            }
        }
        if names.contains("cluster") { figures += try await suites.cluster(largeBytes: size ?? 64 << 20) }
        suites.progress.done()
        // A figure whose result did not check out fails the command, in JSON as in the table.
        let unverified = figures.filter { $0.verified == false }
        defer {
            for f in unverified {
                FileHandle.standardError.write(Data("bench: \(f.suite) \(f.name) on \(f.device): NOT VERIFIED\n".utf8))
            }
        }
        if json {
            try printJSON(figures)
            if !unverified.isEmpty { throw ExitCode(1) }
            return
        }
        print(
            "suite     figure                                                device     median        min           max           unit        ok"
        )
        for f in figures {
            func fmt(_ v: Double) -> String {
                v.isNaN ? "-" : (abs(v) >= 100 ? String(format: "%.0f", v) : String(format: "%.3g", v))
            }
            let ok = f.verified.map { $0 ? "yes" : "NO" } ?? ""
            print(
                f.suite.padding(toLength: 10, withPad: " ", startingAt: 0)
                    + f.name.padding(toLength: 54, withPad: " ", startingAt: 0)
                    + f.device.padding(toLength: 11, withPad: " ", startingAt: 0)
                    + fmt(f.median).padding(toLength: 14, withPad: " ", startingAt: 0)
                    + fmt(f.min).padding(toLength: 14, withPad: " ", startingAt: 0)
                    + fmt(f.max).padding(toLength: 14, withPad: " ", startingAt: 0)
                    + f.unit.padding(toLength: 12, withPad: " ", startingAt: 0) + ok
                    + (f.note.map { "  (\($0))" } ?? ""))
        }
        if !unverified.isEmpty { throw ExitCode(1) }
    }
}
