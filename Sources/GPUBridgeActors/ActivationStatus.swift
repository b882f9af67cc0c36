import Foundation
import GPUBridge

/// One virtual actor as its system sees it at one moment (`EmbeddedActorSystem.activationStatus`): where it is in
/// its life, where it lives and how much it is called. A value; any thread.
public struct ActivationStatus: Sendable, Hashable, Codable {
    public var id: GPUActorID
    public var phase: ActivationPhase
    /// The device the current activation lives on; nil when inactive or when it holds no device memory.
    public var device: DeviceID?
    /// Activations so far (the first call activates; each call after an idle deactivation activates again).
    public var activations: Int
    /// Calls that ran on an active activation, over every activation of this instance.
    public var calls: Int
    /// Calls running now.
    public var inFlight: Int
    /// When the latest call started (this process's wall clock).
    public var lastCall: Date?
    /// Calls that ended by throwing.
    public var failedCalls: Int
    /// Total time of the calls that ended, in nanoseconds: the mean call latency over an interval is the change of
    /// this over the change of `calls - inFlight`.
    public var callNanoseconds: Int
    /// A durable actor's journal and snapshot figures; nil for other actors.
    public var journal: JournalStatistics?
}
