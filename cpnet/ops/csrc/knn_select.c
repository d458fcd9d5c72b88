/* Running top-k selection for cpnet's cross-frame kNN (cpnet/ops/knn.py, cpnet/ops/native.py).
 *
 * torch computes each tile of scores s = -||x_p - x_q||^2 with one matmul; this code folds the tile into the
 * running k-best lists of its rows and of its columns. A list is k (value, index) pairs sorted from best (largest
 * value) down, an empty slot being (-inf, -1). Almost every score loses to its list's current worst entry, so a
 * pass costs about one comparison per score and per direction, against torch.topk's copy-and-select of every row.
 *
 * Plain C with a C ABI, loaded by ctypes: no Python or torch headers, so it compiles in well under a second.
 * knn_select_impl.h is included once for float, once for double.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__AVX__)
#include <immintrin.h>
#endif

#define MAX_THREADS 64
#define ROW_CHUNK 16     /* rows claimed at a time by a thread */
#define COLUMN_CHUNK 64  /* columns claimed at a time by a thread, a multiple of LANES */
#define LANES 16         /* scores tested together before any list is touched */

/* Whether any of LANES scores x[u] beats its threshold: t (the row's worst) or b[u] (the columns' worst). Most
 * groups beat none, so the scan is a few vector compares per LANES scores. NaN beats nothing, as in C. */
static inline int any_gt_f32(const float *x, float t) {
#if defined(__AVX__)
    const __m256 tv = _mm256_set1_ps(t);
    return _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(_mm256_loadu_ps(x), tv, _CMP_GT_OQ),
                                           _mm256_cmp_ps(_mm256_loadu_ps(x + 8), tv, _CMP_GT_OQ)));
#elif defined(__SSE2__)
    const __m128 tv = _mm_set1_ps(t);
    const __m128 a = _mm_or_ps(_mm_cmpgt_ps(_mm_loadu_ps(x), tv), _mm_cmpgt_ps(_mm_loadu_ps(x + 4), tv));
    const __m128 b = _mm_or_ps(_mm_cmpgt_ps(_mm_loadu_ps(x + 8), tv), _mm_cmpgt_ps(_mm_loadu_ps(x + 12), tv));
    return _mm_movemask_ps(_mm_or_ps(a, b));
#else
    int hit = 0;
    for (int u = 0; u < LANES; u++) hit |= x[u] > t;
    return hit;
#endif
}

static inline int any_gtv_f32(const float *x, const float *b) {
#if defined(__AVX__)
    return _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(b), _CMP_GT_OQ),
                                           _mm256_cmp_ps(_mm256_loadu_ps(x + 8), _mm256_loadu_ps(b + 8), _CMP_GT_OQ)));
#elif defined(__SSE2__)
    __m128 m = _mm_cmpgt_ps(_mm_loadu_ps(x), _mm_loadu_ps(b));
    for (int u = 4; u < LANES; u += 4) m = _mm_or_ps(m, _mm_cmpgt_ps(_mm_loadu_ps(x + u), _mm_loadu_ps(b + u)));
    return _mm_movemask_ps(m);
#else
    int hit = 0;
    for (int u = 0; u < LANES; u++) hit |= x[u] > b[u];
    return hit;
#endif
}

static inline int any_gt_f64(const double *x, double t) {
#if defined(__SSE2__)
    const __m128d tv = _mm_set1_pd(t);
    __m128d m = _mm_cmpgt_pd(_mm_loadu_pd(x), tv);
    for (int u = 2; u < LANES; u += 2) m = _mm_or_pd(m, _mm_cmpgt_pd(_mm_loadu_pd(x + u), tv));
    return _mm_movemask_pd(m);
#else
    int hit = 0;
    for (int u = 0; u < LANES; u++) hit |= x[u] > t;
    return hit;
#endif
}

static inline int any_gtv_f64(const double *x, const double *b) {
#if defined(__SSE2__)
    __m128d m = _mm_cmpgt_pd(_mm_loadu_pd(x), _mm_loadu_pd(b));
    for (int u = 2; u < LANES; u += 2) m = _mm_or_pd(m, _mm_cmpgt_pd(_mm_loadu_pd(x + u), _mm_loadu_pd(b + u)));
    return _mm_movemask_pd(m);
#else
    int hit = 0;
    for (int u = 0; u < LANES; u++) hit |= x[u] > b[u];
    return hit;
#endif
}

#define SCALAR float
#define NAME(x) x##_f32
#define ANY_GT any_gt_f32
#define ANY_GTV any_gtv_f32
#include "knn_select_impl.h"
#undef SCALAR
#undef NAME
#undef ANY_GT
#undef ANY_GTV

#define SCALAR double
#define NAME(x) x##_f64
#define ANY_GT any_gt_f64
#define ANY_GTV any_gtv_f64
#include "knn_select_impl.h"
#undef SCALAR
#undef NAME
#undef ANY_GT
#undef ANY_GTV

/* The ABI version the Python loader checks, so a stale cached library is never used with newer callers. */
int cpnet_knn_abi_version(void) { return 1; }
