/// TorchTitan's built-in DeepSeek-V3 flavors (`deepseekv3_args` in v0.2.2; the same numbers in 0.3.0),
/// plus the `10B` flavor of the PiyushDatta/torchtitan_moe fork that the seed scripts were written for.
public enum Flavors {
    public static let names = ["debugmodel", "debugmodel_flex_attn", "16B", "236B", "671B", "10B"]

    public static func args(for name: String) -> ModelArgs? {
        var a = ModelArgs()
        // Shared by every flavor.
        a.normEps = 1e-5; a.ropeTheta = 10_000; a.originalSeqLen = 4096; a.ropeFactor = 40
        a.betaFast = 32; a.betaSlow = 1; a.qkNopeHeadDim = 128; a.qkRopeHeadDim = 64; a.vHeadDim = 128
        a.kvLoraRank = 512
        a.moeArgs.scoreBeforeExperts = false; a.moeArgs.gateBias = false; a.moeArgs.loadBalanceCoeff = 1e-3
        func set(
            vocab: Int, dim: Int, inter: Int, moeInter: Int, layers: Int, dense: Int, heads: Int, qLora: Int,
            experts: Int, shared: Int, topK: Int, groups: Int? = nil, limited: Int? = nil,
            score: String, routeNorm: Bool, routeScale: Double, mscale: Double
        ) {
            a.vocabSize = vocab; a.dim = dim; a.interDim = inter; a.moeInterDim = moeInter; a.nLayers = layers
            a.nDenseLayers = dense; a.nHeads = heads; a.qLoraRank = qLora
            a.moeArgs.numExperts = experts; a.moeArgs.numSharedExperts = shared; a.moeArgs.topK = topK
            a.moeArgs.numExpertGroups = groups; a.moeArgs.numLimitedGroups = limited
            a.moeArgs.scoreFunc = score; a.moeArgs.routeNorm = routeNorm; a.moeArgs.routeScale = routeScale
            a.mscale = mscale
        }
        switch name {
        case "debugmodel", "debugmodel_flex_attn":
            set(
                vocab: 2048, dim: 256, inter: 1024, moeInter: 256, layers: 6, dense: 1, heads: 16, qLora: 0,
                experts: 8, shared: 2, topK: 3, score: "softmax", routeNorm: false, routeScale: 1.0, mscale: 0.70)
        case "16B":
            set(
                vocab: 102_400, dim: 2048, inter: 10_944, moeInter: 1408, layers: 27, dense: 1, heads: 16, qLora: 0,
                experts: 64, shared: 2, topK: 6, score: "softmax", routeNorm: false, routeScale: 1.0, mscale: 0.70)
        case "236B":
            set(
                vocab: 102_400, dim: 5120, inter: 12_288, moeInter: 1536, layers: 60, dense: 1, heads: 128, qLora: 1536,
                experts: 160, shared: 2, topK: 6, groups: 8, limited: 3, score: "softmax", routeNorm: false,
                routeScale: 16.0, mscale: 1.0)
        case "671B":
            set(
                vocab: 129_280, dim: 7168, inter: 18_432, moeInter: 2048, layers: 61, dense: 3, heads: 128, qLora: 1536,
                experts: 256, shared: 1, topK: 8, groups: 8, limited: 4, score: "sigmoid", routeNorm: true,
                routeScale: 2.5, mscale: 1.0)
        case "10B":
            set(
                vocab: 102_400, dim: 1264, inter: 6870, moeInter: 1408, layers: 27, dense: 1, heads: 16, qLora: 0,
                experts: 64, shared: 2, topK: 6, score: "softmax", routeNorm: false, routeScale: 1.0, mscale: 0.70)
        default:
            return nil
        }
        return a
    }
}
