/// The fencing token of the activation a call runs for, handed from the cluster to the actor's storage.
///
/// A cluster node sets `current` around each call it serves to the activation's directory number (numbers only grow,
/// so a later activation of an actor always holds a higher one). When the call activates a `DurableActor`, its claim
/// carries the token (`ActorStorage.claim(_:token:)`), and the storage refuses a token lower than the highest that
/// claimed: an activation its cluster replaced can neither take the actor back nor write behind its successor. The
/// membership lease, the directory registration and the storage epoch are thereby one scheme: only a node with a live
/// lease gets a number, and only the newest number can claim. Outside a cluster it is nil. Task-local: each task sees
/// its own; reading it costs a task-local lookup.
public enum ActivationFence {
    /// The actor and the token of the activation the current call was sent to.
    @TaskLocal public static var current: (actor: GPUActorID, token: Int64)?

    /// The token for a claim of `actor` made now, if any.
    static func token(for actor: GPUActorID) -> Int64? {
        guard let current, current.actor == actor else { return nil }
        return current.token
    }
}
