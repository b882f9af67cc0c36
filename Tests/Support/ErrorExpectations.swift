import GPUBridge
import Testing

/// Runs `body` and returns the `GPUBridgeError` it throws; records an issue if it throws nothing or something else.
public func bridgeError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> GPUBridgeError?
{
    do {
        _ = try body()
        Issue.record("expected a GPUBridgeError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as GPUBridgeError {
        return error
    } catch {
        Issue.record("expected a GPUBridgeError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Runs `body` and returns the `GPUBridgeError` it throws; records an issue if it throws nothing or something else.
public func bridgeError<T>(_ body: () async throws -> T, sourceLocation: SourceLocation = #_sourceLocation) async
    -> GPUBridgeError?
{
    do {
        _ = try await body()
        Issue.record("expected a GPUBridgeError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as GPUBridgeError {
        return error
    } catch {
        Issue.record("expected a GPUBridgeError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
