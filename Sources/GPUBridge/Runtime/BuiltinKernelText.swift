/// The portable text of the built-in kernels (see `PortablePrelude` for the macros).
///
/// Reductions (`gb_dot_partial`, `gb_sum_partial`, `gb_softmax_rows`, `gb_topk_select`) are tree reductions in group
/// shared memory and need a group size of exactly `BuiltinKernelText.reductionGroupSize` (a power of two).
/// `gb_dot_partial`, `gb_sum_partial` and `gb_histogram` visit their input with `GB_FOR_EACH_ITEM`: grid-stride on
/// GPUs, one contiguous chunk per work-item on CPU devices (the catalog defines `GB_CONTIGUOUS_ITEMS` there).
enum BuiltinKernelText {
    static let reductionGroupSize = 256
    static let matmulTile = 16
    static let histogramMaxBins = 256

    static let vectorAdd = """
        GB_KERNEL gb_vector_add(GB_GLOBAL const float* GB_RESTRICT a, GB_GLOBAL const float* GB_RESTRICT b,
                                GB_GLOBAL float* GB_RESTRICT c, int n) {
            int i = GB_GLOBAL_ID(0);
            if (i < n) c[i] = a[i] + b[i];
        }
        """

    static let saxpy = """
        GB_KERNEL gb_saxpy(GB_GLOBAL const float* GB_RESTRICT x, GB_GLOBAL float* GB_RESTRICT y, float alpha, int n) {
            int i = GB_GLOBAL_ID(0);
            if (i < n) y[i] = alpha * x[i] + y[i];
        }
        """

    static let scale = """
        GB_KERNEL gb_scale(GB_GLOBAL const float* GB_RESTRICT x, GB_GLOBAL float* GB_RESTRICT y, float alpha, int n) {
            int i = GB_GLOBAL_ID(0);
            if (i < n) y[i] = alpha * x[i];
        }
        """

    /// One partial sum of x[i] * y[i] per group (grid-stride loop, then a tree in shared memory).
    static let dotPartial = """
        GB_KERNEL gb_dot_partial(GB_GLOBAL const float* GB_RESTRICT x, GB_GLOBAL const float* GB_RESTRICT y,
                                 GB_GLOBAL float* GB_RESTRICT partial, int n) {
            GB_SHARED float scratch[256];
            int lid = GB_LOCAL_ID(0);
            float acc = 0.0f;
            GB_FOR_EACH_ITEM(i, n) acc += x[i] * y[i];
            scratch[lid] = acc;
            GB_BARRIER();
            for (int s = GB_LOCAL_SIZE(0) / 2; s > 0; s >>= 1) {
                if (lid < s) scratch[lid] += scratch[lid + s];
                GB_BARRIER();
            }
            if (lid == 0) partial[GB_GROUP_ID(0)] = scratch[0];
        }
        """

    /// One partial sum of x[i] per group; run again on the partials with one group for the total.
    static let sumPartial = """
        GB_KERNEL gb_sum_partial(GB_GLOBAL const float* GB_RESTRICT x, GB_GLOBAL float* GB_RESTRICT partial, int n) {
            GB_SHARED float scratch[256];
            int lid = GB_LOCAL_ID(0);
            float acc = 0.0f;
            GB_FOR_EACH_ITEM(i, n) acc += x[i];
            scratch[lid] = acc;
            GB_BARRIER();
            for (int s = GB_LOCAL_SIZE(0) / 2; s > 0; s >>= 1) {
                if (lid < s) scratch[lid] += scratch[lid + s];
                GB_BARRIER();
            }
            if (lid == 0) partial[GB_GROUP_ID(0)] = scratch[0];
        }
        """

    /// C[M x N] = A[M x K] * B[K x N], row-major, 16 x 16 tiles in shared memory.
    static let matmul = """
        GB_KERNEL gb_matmul(GB_GLOBAL const float* GB_RESTRICT A, GB_GLOBAL const float* GB_RESTRICT B,
                            GB_GLOBAL float* GB_RESTRICT C, int M, int N, int K) {
            GB_SHARED float As[16][16];
            GB_SHARED float Bs[16][16];
            int tx = GB_LOCAL_ID(0), ty = GB_LOCAL_ID(1);
            int col = GB_GROUP_ID(0) * 16 + tx;
            int row = GB_GROUP_ID(1) * 16 + ty;
            float acc = 0.0f;
            for (int t = 0; t < K; t += 16) {
                As[ty][tx] = (row < M && t + tx < K) ? A[(gb_long)row * K + t + tx] : 0.0f;
                Bs[ty][tx] = (col < N && t + ty < K) ? B[(gb_long)(t + ty) * N + col] : 0.0f;
                GB_BARRIER();
                for (int k = 0; k < 16; ++k) acc += As[ty][k] * Bs[k][tx];
                GB_BARRIER();
            }
            if (row < M && col < N) C[(gb_long)row * N + col] = acc;
        }
        """

    /// y = softmax(x) per row; one group per row.
    static let softmaxRows = """
        GB_KERNEL gb_softmax_rows(GB_GLOBAL const float* GB_RESTRICT x, GB_GLOBAL float* GB_RESTRICT y, int rows, int cols) {
            GB_SHARED float scratch[256];
            int row = GB_GROUP_ID(0);
            int lid = GB_LOCAL_ID(0);
            int size = GB_LOCAL_SIZE(0);
            if (row >= rows) return;
            GB_GLOBAL const float* in = x + (gb_long)row * cols;
            GB_GLOBAL float* out = y + (gb_long)row * cols;
            float m = -GB_INFINITY;
            for (int c = lid; c < cols; c += size) m = GB_FMAXF(m, in[c]);
            scratch[lid] = m;
            GB_BARRIER();
            for (int s = size / 2; s > 0; s >>= 1) {
                if (lid < s) scratch[lid] = GB_FMAXF(scratch[lid], scratch[lid + s]);
                GB_BARRIER();
            }
            float rowMax = scratch[0];
            GB_BARRIER();
            float sum = 0.0f;
            for (int c = lid; c < cols; c += size) sum += GB_EXPF(in[c] - rowMax);
            scratch[lid] = sum;
            GB_BARRIER();
            for (int s = size / 2; s > 0; s >>= 1) {
                if (lid < s) scratch[lid] += scratch[lid + s];
                GB_BARRIER();
            }
            float total = scratch[0];
            for (int c = lid; c < cols; c += size) out[c] = GB_EXPF(in[c] - rowMax) / total;
        }
        """

    /// scores[q * rows + r] = cosine(queries[q], matrix[r]); global size (rows, queries).
    static let cosineScores = """
        GB_KERNEL gb_cosine_scores(GB_GLOBAL const float* GB_RESTRICT queries, GB_GLOBAL const float* GB_RESTRICT matrix,
                                   GB_GLOBAL float* GB_RESTRICT scores, int queryCount, int rows, int dim) {
            int r = GB_GLOBAL_ID(0);
            int q = GB_GLOBAL_ID(1);
            if (r >= rows || q >= queryCount) return;
            GB_GLOBAL const float* a = queries + (gb_long)q * dim;
            GB_GLOBAL const float* b = matrix + (gb_long)r * dim;
            float dot = 0.0f, na = 0.0f, nb = 0.0f;
            for (int d = 0; d < dim; ++d) {
                float u = a[d], v = b[d];
                dot += u * v;
                na += u * u;
                nb += v * v;
            }
            float denom = GB_SQRTF(na) * GB_SQRTF(nb);
            scores[(gb_long)q * rows + r] = denom > 0.0f ? dot / denom : 0.0f;
        }
        """

    /// The k best scores of each query's row, best first, ties to the lower index; one group per query.
    /// Consumes `scores` (chosen entries are set to -infinity).
    static let topkSelect = """
        GB_KERNEL gb_topk_select(GB_GLOBAL float* GB_RESTRICT scores, GB_GLOBAL int* GB_RESTRICT outIndex,
                                 GB_GLOBAL float* GB_RESTRICT outScore, int queryCount, int rows, int k) {
            GB_SHARED float bestScore[256];
            GB_SHARED int bestIndex[256];
            int q = GB_GROUP_ID(0);
            int lid = GB_LOCAL_ID(0);
            int size = GB_LOCAL_SIZE(0);
            if (q >= queryCount) return;
            GB_GLOBAL float* s = scores + (gb_long)q * rows;
            for (int j = 0; j < k; ++j) {
                float bs = -GB_INFINITY;
                int bi = -1;
                for (int r = lid; r < rows; r += size) {
                    float v = s[r];
                    if (v > bs) { bs = v; bi = r; }
                }
                bestScore[lid] = bs;
                bestIndex[lid] = bi;
                GB_BARRIER();
                for (int step = size / 2; step > 0; step >>= 1) {
                    if (lid < step) {
                        float os = bestScore[lid + step];
                        int oi = bestIndex[lid + step];
                        int mine = bestIndex[lid];
                        if (oi >= 0 && (mine < 0 || os > bestScore[lid] || (os == bestScore[lid] && oi < mine))) {
                            bestScore[lid] = os;
                            bestIndex[lid] = oi;
                        }
                    }
                    GB_BARRIER();
                }
                if (lid == 0) {
                    outIndex[q * k + j] = bestIndex[0];
                    outScore[q * k + j] = bestScore[0];
                    if (bestIndex[0] >= 0) s[bestIndex[0]] = -GB_INFINITY;
                }
                GB_BARRIER();
            }
        }
        """

    /// counts[b] += number of values in bin b of [lo, hi] (hi falls in the last bin); bins <= 256.
    static let histogram = """
        GB_KERNEL gb_histogram(GB_GLOBAL const float* GB_RESTRICT values, GB_GLOBAL uint* GB_RESTRICT counts,
                               int n, int bins, float lo, float hi) {
            GB_SHARED uint bucket[256];
            int lid = GB_LOCAL_ID(0);
            int size = GB_LOCAL_SIZE(0);
            for (int b = lid; b < bins; b += size) bucket[b] = 0u;
            GB_BARRIER();
            float scale = (float)bins / (hi - lo);
            GB_FOR_EACH_ITEM(i, n) {
                float v = values[i];
                if (v >= lo && v <= hi) {
                    int b = (int)((v - lo) * scale);
                    if (b >= bins) b = bins - 1;
                    GB_ATOMIC_ADD_UINT(&bucket[b], 1u);
                }
            }
            GB_BARRIER();
            for (int b = lid; b < bins; b += size) {
                if (bucket[b] != 0u) GB_ATOMIC_ADD_UINT(&counts[b], bucket[b]);
            }
        }
        """
}
