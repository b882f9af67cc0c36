#include "CGPUBridgeVectorMath.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/// On x86-64 each loop is compiled three times (`GB_VARIANT`): for AVX-512, for AVX2 + FMA and for the baseline, from
/// one always-inlined body, and the first call picks the best the processor has (`gb_pick`). A dispatch of our own
/// rather than `target_clones`: clones resolve through an `ifunc`, which the dynamic loader runs before a sanitizer's
/// runtime is ready, and that crashed the ThreadSanitizer build at load.
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define GB_X86 1
#else
#define GB_X86 0
#endif

#define GB_INLINE static inline __attribute__((always_inline))

/// Lanes of the independent accumulators: one AVX-512 register of floats.
#define GB_LANES 16
/// Elements summed in float before the block's sum is added in double.
#define GB_BLOCK 4096

GB_INLINE float gb_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

GB_INLINE uint32_t gb_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/// e^x without branches or calls, so that a loop over it vectorises: the same Cephes-style polynomial as
/// `CPUVectorMath.exp` (range reduction by ln 2, degree-5 polynomial, exponent by bit arithmetic).
GB_INLINE float gb_exp(float x) {
    const float high = 88.72283f, low = -87.33654f;
    float clamped = x < low ? low : x;
    clamped = clamped > high ? high : clamped;
    // n = round(x / ln2) by the 1.5 * 2^23 trick.
    const float magic = 12582912.0f;
    float shifted = clamped * 1.44269504f + magic;
    float n = shifted - magic;
    int32_t whole = (int32_t)(gb_bits(shifted) - gb_bits(magic));
    // x = n ln2 + r, ln2 split in two parts so that n ln2 is exact.
    float r = clamped - n * 0.693359375f;
    r = r - n * -2.1219444e-4f;
    float p = 1.98756915e-4f;
    p = p * r + 1.39819995e-3f;
    p = p * r + 8.3334519e-3f;
    p = p * r + 4.16657959e-2f;
    p = p * r + 1.66666655e-1f;
    p = p * r + 5.00000012e-1f;
    p = p * (r * r) + r + 1.0f;
    // 2^n by the exponent bits; n = 128 scales by 2^127 and then by 2.
    int32_t capped = whole < 127 ? whole : 127;
    float result = p * gb_from_bits((uint32_t)(capped + 127) << 23);
    result = whole > 127 ? result * 2.0f : result;
    result = x < low ? 0.0f : result;
    result = x > high ? INFINITY : result;
    return x != x ? x : result;
}

GB_INLINE double gb_exponentials_body(const float *x, float *y, long count, float shift) {
    for (long i = 0; i < count; i++) y[i] = gb_exp(x[i] - shift);
    double total = 0;
    for (long start = 0; start < count; start += GB_BLOCK) {
        long end = count - start < GB_BLOCK ? count : start + GB_BLOCK;
        float lanes[GB_LANES] = {0};
        long i = start;
        for (; i + GB_LANES <= end; i += GB_LANES)
            for (int j = 0; j < GB_LANES; j++) lanes[j] += y[i + j];
        float block = 0;
        for (int j = 0; j < GB_LANES; j++) block += lanes[j];
        for (; i < end; i++) block += y[i];
        total += block;
    }
    return total;
}

GB_INLINE float gb_maximum_body(const float *x, long count) {
    float lanes[GB_LANES];
    for (int j = 0; j < GB_LANES; j++) lanes[j] = -INFINITY;
    long i = 0;
    for (; i + GB_LANES <= count; i += GB_LANES)
        for (int j = 0; j < GB_LANES; j++) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
    float m = -INFINITY;
    for (int j = 0; j < GB_LANES; j++) m = lanes[j] > m ? lanes[j] : m;
    for (; i < count; i++) m = x[i] > m ? x[i] : m;
    return m;
}

GB_INLINE void gb_scale_body(float *y, long count, float factor) {
    for (long i = 0; i < count; i++) y[i] *= factor;
}

/// The dot product of `a` and `b` over `count` floats: GB_LANES float accumulators (one AVX-512 register), then the
/// tail.
GB_INLINE float gb_dot_body(const float *a, const float *b, long count) {
    float lanes[GB_LANES] = {0};
    long i = 0;
    for (; i + GB_LANES <= count; i += GB_LANES)
        for (int j = 0; j < GB_LANES; j++) lanes[j] += a[i + j] * b[i + j];
    float dot = 0;
    for (int j = 0; j < GB_LANES; j++) dot += lanes[j];
    for (; i < count; i++) dot += a[i] * b[i];
    return dot;
}

GB_INLINE void gb_row_norms_body(const float *rows, long count, long dim, float *norms) {
    for (long r = 0; r < count; r++) norms[r] = sqrtf(gb_dot_body(rows + r * dim, rows + r * dim, dim));
}

GB_INLINE void gb_cosine_rows_body(const float *query, float queryNorm, const float *rows, const float *rowNorms,
                                   long count, long dim, float *out) {
    for (long r = 0; r < count; r++) {
        float dot = gb_dot_body(query, rows + r * dim, dim);
        float denominator = queryNorm * rowNorms[r];
        out[r] = denominator > 0 ? dot / denominator : 0;
    }
}

/// The first `i < count` with `x[i] > threshold` (never for NaN), else `count`: blocks of GB_LANES compared at once (an
/// OR of the comparisons, which vectorises), the block with a hit then scanned one by one.
GB_INLINE long gb_first_above_body(const float *x, long count, float threshold) {
    long i = 0;
    for (; i + GB_LANES <= count; i += GB_LANES) {
        int hit = 0;
        for (int j = 0; j < GB_LANES; j++) hit |= x[i + j] > threshold;
        if (hit) break;
    }
    for (; i < count; i++)
        if (x[i] > threshold) return i;
    return count;
}

/// One compiled variant of the loops.
typedef struct {
    double (*exponentials)(const float *, float *, long, float);
    float (*maximum)(const float *, long);
    void (*scale)(float *, long, float);
    float (*dot)(const float *, const float *, long);
    void (*rowNorms)(const float *, long, long, float *);
    void (*cosineRows)(const float *, float, const float *, const float *, long, long, float *);
    long (*firstAbove)(const float *, long, float);
    const char *name;
} gb_variant;

#define GB_VARIANT(suffix, attributes, label)                                                                         \
    attributes static double gb_exponentials_##suffix(const float *x, float *y, long count, float shift) {           \
        return gb_exponentials_body(x, y, count, shift);                                                             \
    }                                                                                                                \
    attributes static float gb_maximum_##suffix(const float *x, long count) { return gb_maximum_body(x, count); }  \
    attributes static void gb_scale_##suffix(float *y, long count, float factor) { gb_scale_body(y, count, factor); } \
    attributes static float gb_dot_##suffix(const float *a, const float *b, long count) {                            \
        return gb_dot_body(a, b, count);                                                                             \
    }                                                                                                                \
    attributes static void gb_row_norms_##suffix(const float *rows, long count, long dim, float *norms) {            \
        gb_row_norms_body(rows, count, dim, norms);                                                                  \
    }                                                                                                                \
    attributes static void gb_cosine_rows_##suffix(const float *query, float queryNorm, const float *rows,          \
                                                   const float *rowNorms, long count, long dim, float *out) {        \
        gb_cosine_rows_body(query, queryNorm, rows, rowNorms, count, dim, out);                                      \
    }                                                                                                                \
    attributes static long gb_first_above_##suffix(const float *x, long count, float threshold) {                   \
        return gb_first_above_body(x, count, threshold);                                                             \
    }                                                                                                                \
    static const gb_variant gb_variant_##suffix = {gb_exponentials_##suffix,                                         \
                                                   gb_maximum_##suffix,                                              \
                                                   gb_scale_##suffix,                                                \
                                                   gb_dot_##suffix,                                                  \
                                                   gb_row_norms_##suffix,                                            \
                                                   gb_cosine_rows_##suffix,                                          \
                                                   gb_first_above_##suffix,                                          \
                                                   label};

GB_VARIANT(baseline, , "baseline")
#if GB_X86
GB_VARIANT(avx2, __attribute__((target("avx2,fma"))), "avx2+fma")
GB_VARIANT(avx512, __attribute__((target("avx512f"))), "avx512f")
#endif

/// The best variant for this processor, chosen on the first call (a race between first calls picks the same one).
static const gb_variant *gb_pick(void) {
    static const gb_variant *chosen;
    const gb_variant *variant = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (variant) return variant;
    variant = &gb_variant_baseline;
#if GB_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        variant = &gb_variant_avx512;
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        variant = &gb_variant_avx2;
    }
#endif
    __atomic_store_n(&chosen, variant, __ATOMIC_RELEASE);
    return variant;
}

double gb_cpu_exponentials(const float *x, float *y, long count, float shift) {
    return gb_pick()->exponentials(x, y, count, shift);
}

float gb_cpu_maximum(const float *x, long count) { return gb_pick()->maximum(x, count); }

void gb_cpu_scale(float *y, long count, float factor) { gb_pick()->scale(y, count, factor); }

void gb_cpu_softmax_row(const float *x, float *y, long count) {
    const gb_variant *variant = gb_pick();
    float m = variant->maximum(x, count);
    double sum = variant->exponentials(x, y, count, m);
    variant->scale(y, count, (float)(1.0 / sum));
}

float gb_cpu_dot(const float *a, const float *b, long count) { return gb_pick()->dot(a, b, count); }

void gb_cpu_row_norms(const float *rows, long count, long dim, float *norms) {
    gb_pick()->rowNorms(rows, count, dim, norms);
}

void gb_cpu_cosine_rows(const float *query, float queryNorm, const float *rows, const float *rowNorms, long count,
                        long dim, float *out) {
    gb_pick()->cosineRows(query, queryNorm, rows, rowNorms, count, dim, out);
}

long gb_cpu_first_above(const float *x, long count, float threshold) {
    return gb_pick()->firstAbove(x, count, threshold);
}

const char *gb_cpu_vector_math_variant(void) { return gb_pick()->name; }
