public enum GPUBridgeVersion { public static let string = "0.1.0" }
