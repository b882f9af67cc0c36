#ifndef CGPUBRIDGE_VECTOR_MATH_H
#define CGPUBRIDGE_VECTOR_MATH_H

/// Element-wise float loops of the CPU backend's built-in kernels, in C so that on x86-64 each is compiled for
/// AVX-512, AVX2 + FMA and the baseline, and the best one the processor has is picked on the first call, as numpy
/// does for its own loops. Pure functions of their arguments; any thread may call them.
/// `x` and `y` may be the same array (each element is read before it is written), not partly overlapping ones.

/// `y[i] = e^(x[i] - shift)` for `i < count`; returns the sum of the `y` (float lanes per block, blocks added in
/// double). e^v is 0 below -87.33654, infinity above 88.72283, NaN for NaN, and within 2 ulp of `expf` between.
double gb_cpu_exponentials(const float *x, float *y, long count, float shift);

/// The largest of `x[0 ..< count]`, skipping NaN; -infinity when `count` is 0 or every element is NaN.
float gb_cpu_maximum(const float *x, long count);

/// `y[i] *= factor` for `i < count`.
void gb_cpu_scale(float *y, long count, float factor);

/// `y = softmax(x)` over one row of `count` floats: the maximum, the exponentials shifted by it and their sum, then
/// `y` scaled by one over the sum.
void gb_cpu_softmax_row(const float *x, float *y, long count);

/// The dot product of `a[0 ..< count]` and `b[0 ..< count]`, in float (16 lanes, then the tail).
float gb_cpu_dot(const float *a, const float *b, long count);

/// `norms[r]` = the Euclidean norm of row `r` of the row-major `count x dim` matrix `rows`, for `r < count`.
void gb_cpu_row_norms(const float *rows, long count, long dim, float *norms);

/// The cosine similarity of `query` (`dim` floats, of norm `queryNorm`) with each row of the row-major `count x dim`
/// matrix `rows` (of norms `rowNorms`): `out[r] = dot / (queryNorm * rowNorms[r])`, or 0 where that product is not
/// positive.
void gb_cpu_cosine_rows(const float *query, float queryNorm, const float *rows, const float *rowNorms, long count,
                        long dim, float *out);

/// The first index `i < count` with `x[i] > threshold` (a NaN is never above), or `count` when there is none.
long gb_cpu_first_above(const float *x, long count, float threshold);

/// The name of the variant picked for this processor: "avx512f", "avx2+fma" or "baseline".
const char *gb_cpu_vector_math_variant(void);

#endif
