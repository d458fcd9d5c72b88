/* Running top-k selection for cpnet's cross-frame kNN (cpnet/ops/knn.py, cpnet/ops/native.py).
 *
 * torch computes each tile of dot products x_p·x_q with one matmul; this code folds the tile into the
 * running k-best lists of its rows and of its columns. A list is k (value, index) pairs sorted from best (largest
 * value) down, an empty slot being (-inf, -1). Almost every score loses to its list's current worst entry, so a
 * pass is a few vector operations per 16 scores plus a sorted insert for the few that win, against torch.topk's
 * copy-and-select of every row. Rows and columns are two phases over the tile, each split over the threads.
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

#define MAX_THREADS 64
#define ROW_CHUNK 32     /* rows claimed at a time by a thread */
#define COLUMN_CHUNK 512  /* columns claimed at a time by a thread, a multiple of LANES */
#define LANES 16         /* scores tested together before any list is touched */

/* The score of a pair is 2·x_p·x_q − ‖x_q‖² for the row p's list (−‖x_p − x_q‖² + ‖x_p‖²: the same order, the
 * row's own norm left out) and 2·x_p·x_q − ‖x_p‖² for the column q's list. A tile holds the dot products.
 *
 * mask_row: bit u set when 2·x[u] − sq[u] beats t (the row's worst); mask_col: when 2·x[u] − s beats b[u] (the
 * columns' worst), u < LANES. Most groups beat none, so the scan is a few vector operations per LANES scores and a
 * group with a hit visits only its set bits. NaN beats nothing, as in C. The scalar code computes the same
 * 2·x − y (doubling is exact; -std=c99 forbids contracting it into a fused multiply-add). */
static inline unsigned mask_row_f32(const float *x, const float *sq, float t) {
    unsigned m = 0;
#if defined(__SSE2__)
    const __m128 tv = _mm_set1_ps(t);
    for (int u = 0; u < LANES; u += 4) {
        const __m128 v = _mm_loadu_ps(x + u);
        m |= (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_sub_ps(_mm_add_ps(v, v), _mm_loadu_ps(sq + u)), tv)) << u;
    }
#else
    for (int u = 0; u < LANES; u++) m |= (unsigned)(2 * x[u] - sq[u] > t) << u;
#endif
    return m;
}

static inline unsigned mask_col_f32(const float *x, float s, const float *b) {
    unsigned m = 0;
#if defined(__SSE2__)
    const __m128 sv = _mm_set1_ps(s);
    for (int u = 0; u < LANES; u += 4) {
        const __m128 v = _mm_loadu_ps(x + u);
        m |= (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_sub_ps(_mm_add_ps(v, v), sv), _mm_loadu_ps(b + u))) << u;
    }
#else
    for (int u = 0; u < LANES; u++) m |= (unsigned)(2 * x[u] - s > b[u]) << u;
#endif
    return m;
}

static inline unsigned mask_row_f64(const double *x, const double *sq, double t) {
    unsigned m = 0;
#if defined(__SSE2__)
    const __m128d tv = _mm_set1_pd(t);
    for (int u = 0; u < LANES; u += 2) {
        const __m128d v = _mm_loadu_pd(x + u);
        m |= (unsigned)_mm_movemask_pd(_mm_cmpgt_pd(_mm_sub_pd(_mm_add_pd(v, v), _mm_loadu_pd(sq + u)), tv)) << u;
    }
#else
    for (int u = 0; u < LANES; u++) m |= (unsigned)(2 * x[u] - sq[u] > t) << u;
#endif
    return m;
}

static inline unsigned mask_col_f64(const double *x, double s, const double *b) {
    unsigned m = 0;
#if defined(__SSE2__)
    const __m128d sv = _mm_set1_pd(s);
    for (int u = 0; u < LANES; u += 2) {
        const __m128d v = _mm_loadu_pd(x + u);
        m |= (unsigned)_mm_movemask_pd(_mm_cmpgt_pd(_mm_sub_pd(_mm_add_pd(v, v), sv), _mm_loadu_pd(b + u))) << u;
    }
#else
    for (int u = 0; u < LANES; u++) m |= (unsigned)(2 * x[u] - s > b[u]) << u;
#endif
    return m;
}

#define SCALAR float
#define NAME(x) x##_f32
#define MASK_ROW mask_row_f32
#define MASK_COL mask_col_f32
#include "knn_select_impl.h"
#undef SCALAR
#undef NAME
#undef MASK_ROW
#undef MASK_COL

#define SCALAR double
#define NAME(x) x##_f64
#define MASK_ROW mask_row_f64
#define MASK_COL mask_col_f64
#include "knn_select_impl.h"
#undef SCALAR
#undef NAME
#undef MASK_ROW
#undef MASK_COL

/* The ABI version the Python loader checks, so a stale cached library is never used with newer callers.
 * 3: the update functions return -3 for k < 1. */
int cpnet_knn_abi_version(void) { return 3; }
