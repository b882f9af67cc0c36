import Foundation
import GPUBridgeActors
import Synchronization

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}

/// The three-way race of `ClusterNode.within`: the body, the timer and the caller's cancellation each try to resume
/// the one continuation; the first wins, stops the timer and (if it is not the body) cancels the body.
final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        var timer: Task<Void, Never>?
        var result: Result<T, any Error>?
    }

    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<T, any Error>, work: Task<Void, Never>, timer: Task<Void, Never>) {
        let early = state.withLock { s -> Result<T, any Error>? in
            s.work = work
            s.timer = timer
            guard let result = s.result else {
                s.continuation = continuation
                return nil
            }
            return result
        }
        if let early {
            timer.cancel()
            if case .failure = early { work.cancel() }
            continuation.resume(with: early)
        }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, work, timer) = state.withLock {
            s -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?, Task<Void, Never>?) in
            guard s.result == nil else { return (nil, nil, nil) }
            s.result = result
            defer { s.continuation = nil }
            return (s.continuation, s.work, s.timer)
        }
        timer?.cancel()
        if case .failure = result { work?.cancel() }
        continuation?.resume(with: result)
    }
}
