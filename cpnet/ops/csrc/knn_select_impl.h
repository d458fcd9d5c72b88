/* Body of knn_select.c for one scalar type: SCALAR and NAME(x) are defined by the includer. */

/* Insert (s, id) into the list (val, idx) of length k, sorted from best down; the worst entry falls off.
 * The caller has checked that s beats the current worst entry. (A branch-free count-and-shift insert measured
 * slower here for k = 12.) */
static inline void NAME(insert)(SCALAR *val, int64_t *idx, int64_t k, SCALAR s, int64_t id) {
    int64_t p = k - 1;
    while (p > 0 && !(val[p - 1] >= s)) {
        val[p] = val[p - 1];
        idx[p] = idx[p - 1];
        p--;
    }
    val[p] = s;
    idx[p] = id;
}

typedef struct {
    const SCALAR *dot;   /* (n, r, c) tile of dot products, contiguous */
    const SCALAR *sq;    /* (n, p) squared norms of every point */
    int64_t n, r, c;
    SCALAR *val; /* (n, p, k) running lists of every point */
    int64_t *idx;
    int64_t p, k, row0, col0, hw;
    int columns;    /* 0: this phase folds rows into the rows' lists; 1: columns into the columns' lists */
    int64_t *next;  /* shared counter: the next unclaimed work item */
    int64_t items;  /* rows: n·r rows; columns: n·⌈c / COLUMN_CHUNK⌉ column chunks */
} NAME(job_t);

/* Row i of batch b into its own list, skipping the columns of its own frame when hw > 0. */
static void NAME(fold_row)(const NAME(job_t) *job, int64_t b, int64_t i) {
    const int64_t c = job->c, k = job->k, hw = job->hw, point = job->row0 + i;
    const SCALAR *row = job->dot + (b * job->r + i) * c, *sqc = job->sq + b * job->p + job->col0;
    SCALAR *rv = job->val + (b * job->p + point) * k;
    int64_t *ri = job->idx + (b * job->p + point) * k;
    int64_t skip0 = c, skip1 = c;
    if (hw > 0) {
        skip0 = (point / hw) * hw - job->col0;
        skip1 = skip0 + hw;
        skip0 = skip0 < 0 ? 0 : (skip0 > c ? c : skip0);
        skip1 = skip1 < 0 ? 0 : (skip1 > c ? c : skip1);
    }
    SCALAR worst = rv[k - 1];
    for (int part = 0; part < 2; part++) {
        const int64_t j0 = part ? skip1 : 0, j1 = part ? c : skip0;
        int64_t g = j0;
        for (; g + LANES <= j1; g += LANES) {
            for (unsigned m = MASK_ROW(row + g, sqc + g, worst); m; m &= m - 1) {
                const int64_t j = g + __builtin_ctz(m);
                const SCALAR s = 2 * row[j] - sqc[j];
                if (s > worst) { /* worst may have risen since the mask was taken */
                    NAME(insert)(rv, ri, k, s, job->col0 + j);
                    worst = rv[k - 1];
                }
            }
        }
        for (int64_t j = g; j < j1; j++) {
            const SCALAR s = 2 * row[j] - sqc[j];
            if (s > worst) {
                NAME(insert)(rv, ri, k, s, job->col0 + j);
                worst = rv[k - 1];
            }
        }
    }
}

/* Columns [j0, j1) of batch b: every row of the block into those columns' lists (no same-frame pairs here). */
static void NAME(fold_columns)(const NAME(job_t) *job, int64_t b, int64_t j0, int64_t j1) {
    const int64_t c = job->c, k = job->k;
    SCALAR bound[COLUMN_CHUNK];
    SCALAR *cv = job->val + (b * job->p + job->col0) * k;
    int64_t *ci = job->idx + (b * job->p + job->col0) * k;
    for (int64_t j = j0; j < j1; j++) bound[j - j0] = cv[j * k + k - 1];
    for (int64_t i = 0; i < job->r; i++) {
        const SCALAR *row = job->dot + (b * job->r + i) * c, sqr = job->sq[b * job->p + job->row0 + i];
        int64_t g = j0;
        for (; g + LANES <= j1; g += LANES) {
            for (unsigned m = MASK_COL(row + g, sqr, bound + (g - j0)); m; m &= m - 1) {
                const int64_t j = g + __builtin_ctz(m);
                const SCALAR s = 2 * row[j] - sqr;
                if (s > bound[j - j0]) { /* true by the mask; checked so an insert never drops a better entry */
                    NAME(insert)(cv + j * k, ci + j * k, k, s, job->row0 + i);
                    bound[j - j0] = cv[j * k + k - 1];
                }
            }
        }
        for (int64_t j = g; j < j1; j++) {
            const SCALAR s = 2 * row[j] - sqr;
            if (s > bound[j - j0]) {
                NAME(insert)(cv + j * k, ci + j * k, k, s, job->row0 + i);
                bound[j - j0] = cv[j * k + k - 1];
            }
        }
    }
}

static void *NAME(work)(void *arg) {
    const NAME(job_t) *job = (const NAME(job_t) *)arg;
    const int64_t chunks = (job->c + COLUMN_CHUNK - 1) / COLUMN_CHUNK;
    /* Work is claimed from a shared counter, so a thread slowed by other work on its core (torch's spinning
     * OpenMP workers, another process) does not hold the others up. */
    const int64_t step = job->columns ? 1 : ROW_CHUNK;
    for (;;) {
        const int64_t begin = __atomic_fetch_add(job->next, step, __ATOMIC_RELAXED);
        if (begin >= job->items) break;
        const int64_t end = begin + step < job->items ? begin + step : job->items;
        for (int64_t item = begin; item < end; item++) {
            if (job->columns) {
                const int64_t b = item / chunks, j0 = (item % chunks) * COLUMN_CHUNK;
                NAME(fold_columns)(job, b, j0, j0 + COLUMN_CHUNK < job->c ? j0 + COLUMN_CHUNK : job->c);
            } else {
                NAME(fold_row)(job, item / job->r, item % job->r);
            }
        }
    }
    return NULL;
}

/* Run one phase over `threads` threads (the caller's included). Built with OpenMP, the threads are those of the
 * process's OpenMP runtime, which is torch's own (its libgomp is already loaded under the same soname), so they
 * are the workers that just ran the matmul, not new threads competing with them for the cores. Without OpenMP,
 * POSIX threads; threads that cannot start leave their share to the others, so the phase always completes. */
static void NAME(run_phase)(NAME(job_t) *job, int threads) {
    int64_t next = 0;
    job->next = &next;
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    NAME(work)(job);
#else
    pthread_t tids[MAX_THREADS];
    int started = 0;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tids[started], NULL, NAME(work), job) != 0) break;
        started++;
    }
    NAME(work)(job);
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
#endif
}

/* Fold a tile of dot products into the running lists. Returns 0; -3 when k < 1 (no list to fold into); -2 when
 * do_cols is asked for with hw > 0 and the tile is not empty. Nothing is read or written in either case.
 *   dot: (n, r, c) contiguous; dot[b][i][j] = x_p·x_q for p = row0 + i, q = col0 + j; sq: (n, p) ‖x‖² of every
 *   point. A list's values are −‖x_p − x_q‖² + ‖x_owner‖² (the owner's norm left out: it does not change the order).
 *   val, idx: (n, p, k) contiguous lists of every point, sorted best first; empty slots (-inf, -1).
 *   do_rows: update the rows' lists with the block's columns; do_cols: the columns' lists with the block's rows
 *   (the two point ranges must then be disjoint, and hw 0). hw > 0: skip pairs in the same frame of hw points.
 * Rows and columns are two phases, each split over the threads, so every list has one writer at a time. */
int NAME(cpnet_knn_update)(const SCALAR *dot, const SCALAR *sq, int64_t n, int64_t r, int64_t c, SCALAR *val,
                           int64_t *idx, int64_t p, int64_t k, int64_t row0, int64_t col0, int64_t hw, int do_rows,
                           int do_cols, int num_threads) {
    if (k < 1) return -3;
    if (n <= 0 || r <= 0 || c <= 0) return 0;
    if (do_cols && hw > 0) return -2;
    const int threads = num_threads < 1 ? 1 : (num_threads > MAX_THREADS ? MAX_THREADS : num_threads);
    NAME(job_t) job = {dot, sq, n, r, c, val, idx, p, k, row0, col0, hw, 0, NULL, n * r};
    if (do_rows) NAME(run_phase)(&job, threads < job.items ? threads : (int)job.items);
    if (do_cols) {
        job.columns = 1;
        job.items = n * ((c + COLUMN_CHUNK - 1) / COLUMN_CHUNK);
        NAME(run_phase)(&job, threads < job.items ? threads : (int)job.items);
    }
    return 0;
}
