/// Identifies calls so that a retry of a state-changing call is applied once (see `DurableActor`).
///
/// Every call that crosses an actor system (`remoteCall`: another node, or `serializeLocalCalls`) carries an id: the
/// caller's `idempotencyKey` when one is set, else a new UUID, kept across the system's own retries (a call re-sent
/// to an actor's new node after its node died). The receiving side runs the call with `current` set to that id for
/// the actor it targets, and `DurableActor.mutate` journals it with the mutation; a later call carrying an id the
/// actor remembers is not applied again.
///
/// A caller that retries on its own (a client that lost the reply) sets one key around each logical call:
/// ```swift
/// try await ActorCallContext.$idempotencyKey.withValue("order-1234") { try await index.upsert(ids: ids, vectors: rows) }
/// ```
/// Direct calls to an actor in the same process (no `remoteCall`) see the key through the task-local itself, as does
/// every call the called actor makes in turn: one key names one logical call, so set it around exactly one.
/// Task-local values: each task sees its own; reading one costs a task-local lookup.
public enum ActorCallContext {
    /// The id of the call being served and the actor it was sent to (set by the actor system around a call it
    /// executes; nil in a call made directly).
    @TaskLocal public static var current: (actor: GPUActorID, callID: String)?
    /// The id the caller wants its next call to carry.
    @TaskLocal public static var idempotencyKey: String?

    /// The call id a mutation of `actor` made now belongs to, if any.
    static func callID(for actor: GPUActorID) -> String? {
        if let current, current.actor == actor { return current.callID }
        return idempotencyKey
    }
}
