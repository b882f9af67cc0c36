import Distributed
import GPUBridgeActors
import Testing

@Suite("Readable call target names")
struct CallTargetNameTests {
    @Test("a mangled distributed target reads as Type.method; anything else is returned unchanged")
    func readable() {
        #expect(
            CallTargetName.readable(
                "$s15GPUBridgeActors16VectorIndexActorC5query_1kSaySayAA9VectorHitVGGSaySfG_SitYaKFTE")
                == "VectorIndexActor.query")
        for text in ["", "count", "$s", "$sGARBAGE!", "upsert(ids:vectors:)"] {
            #expect(CallTargetName.readable(text) == text, "\(text.debugDescription)")
        }
    }
}
