/* Body of knn_select.c for one scalar type: SCALAR and NAME(x) are defined by the includer. */

/* Insert (s, id) into the list (val, idx) of length k, sorted from best down; the worst entry falls off.
 * The caller has checked that s beats the current worst entry. */
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
    const SCALAR *score; /* (n, r, c) block, contiguous */
    int64_t n, r, c;
    SCALAR *val;         /* (n, p, k) running lists of every point */
    int64_t *idx;
    int64_t p, k, row0, col0, hw;
    int do_rows, do_cols;
    const SCALAR *bound0; /* (n, c) snapshot of the columns' worst values */
    pthread_mutex_t *locks; /* one per batch */
    int64_t *next;       /* shared counter: the next unclaimed flattened (batch, row) */
    int64_t total, chunk;
    int failed;
} NAME(job_t);

/* Merge one batch's private column candidates into the shared lists. */
static void NAME(flush)(NAME(job_t) *job, int64_t b, const SCALAR *pval, const int64_t *pidx) {
    const int64_t c = job->c, k = job->k;
    pthread_mutex_lock(&job->locks[b]);
    for (int64_t j = 0; j < c; j++) {
        SCALAR *gv = job->val + (b * job->p + job->col0 + j) * k;
        int64_t *gi = job->idx + (b * job->p + job->col0 + j) * k;
        for (int64_t e = 0; e < k && pidx[j * k + e] >= 0; e++) {
            const SCALAR s = pval[j * k + e];
            if (!(s > gv[k - 1])) break; /* sorted: nothing further down can enter */
            NAME(insert)(gv, gi, k, s, pidx[j * k + e]);
        }
    }
    pthread_mutex_unlock(&job->locks[b]);
}

static void NAME(reset)(NAME(job_t) *job, int64_t b, SCALAR *pval, int64_t *pidx, SCALAR *bound) {
    const int64_t c = job->c, k = job->k;
    for (int64_t e = 0; e < c * k; e++) {
        pval[e] = -INFINITY;
        pidx[e] = -1;
    }
    memcpy(bound, job->bound0 + b * c, (size_t)c * sizeof(SCALAR));
}

/* Fold row i of batch b into its own list (do_rows) and into the thread's private column lists (do_cols). */
static void NAME(fold_row)(const NAME(job_t) *job, int64_t b, int64_t i, SCALAR *pval, int64_t *pidx,
                           SCALAR *bound) {
    const int64_t c = job->c, k = job->k, hw = job->hw, point = job->row0 + i;
    const SCALAR *row = job->score + (b * job->r + i) * c;
    SCALAR *rv = job->val + (b * job->p + point) * k;
    int64_t *ri = job->idx + (b * job->p + point) * k;
    /* Columns of the row's own frame are skipped when hw > 0 (blocks that contain them). */
    int64_t skip0 = c, skip1 = c;
    if (hw > 0) {
        skip0 = (point / hw) * hw - job->col0;
        skip1 = skip0 + hw;
        skip0 = skip0 < 0 ? 0 : (skip0 > c ? c : skip0);
        skip1 = skip1 < 0 ? 0 : (skip1 > c ? c : skip1);
    }
    SCALAR worst = job->do_rows ? rv[k - 1] : INFINITY; /* +inf: nothing enters when rows are not asked for */
    for (int part = 0; part < 2; part++) {
        const int64_t j0 = part ? skip1 : 0, j1 = part ? c : skip0;
        for (int64_t g = j0; g < j1; g += LANES) {
            const int64_t g1 = g + LANES < j1 ? g + LANES : j1;
            /* Most groups of scores beat neither their row's worst nor any column's: one branch-free test
             * (vectorised by the compiler) skips them. */
            int hit = 0;
            if (g1 - g == LANES) {
                if (job->do_cols) {
                    for (int u = 0; u < LANES; u++) hit |= (row[g + u] > worst) | (row[g + u] > bound[g + u]);
                } else {
                    for (int u = 0; u < LANES; u++) hit |= row[g + u] > worst;
                }
                if (!hit) continue;
            }
            for (int64_t j = g; j < g1; j++) {
                const SCALAR s = row[j];
                if (s > worst) {
                    NAME(insert)(rv, ri, k, s, job->col0 + j);
                    worst = rv[k - 1];
                }
                if (job->do_cols && s > bound[j]) {
                    SCALAR *cv = pval + j * k;
                    int64_t *ci = pidx + j * k;
                    NAME(insert)(cv, ci, k, s, point);
                    if (ci[k - 1] >= 0 && cv[k - 1] > bound[j]) bound[j] = cv[k - 1]; /* full: prune by its worst */
                }
            }
        }
    }
}

static void *NAME(work)(void *arg) {
    NAME(job_t) *job = (NAME(job_t) *)arg;
    const int64_t c = job->c, k = job->k;
    SCALAR *pval = NULL, *bound = NULL;
    int64_t *pidx = NULL;
    if (job->do_cols) {
        pval = (SCALAR *)malloc((size_t)(c * k) * sizeof(SCALAR));
        pidx = (int64_t *)malloc((size_t)(c * k) * sizeof(int64_t));
        bound = (SCALAR *)malloc((size_t)c * sizeof(SCALAR));
        if (!pval || !pidx || !bound) {
            free(pval), free(pidx), free(bound);
            job->failed = 1;
            return NULL;
        }
    }
    /* Rows are claimed in chunks from a shared counter, so a thread slowed by other work on its core (torch's
     * spinning OpenMP workers, another process) does not hold the others up at the end. */
    int64_t batch = -1;
    for (;;) {
        const int64_t begin = __atomic_fetch_add(job->next, job->chunk, __ATOMIC_RELAXED);
        if (begin >= job->total) break;
        const int64_t end = begin + job->chunk < job->total ? begin + job->chunk : job->total;
        for (int64_t flat = begin; flat < end; flat++) {
            const int64_t b = flat / job->r;
            if (job->do_cols && b != batch) {
                if (batch >= 0) NAME(flush)(job, batch, pval, pidx);
                NAME(reset)(job, b, pval, pidx, bound);
            }
            batch = b;
            NAME(fold_row)(job, b, flat % job->r, pval, pidx, bound);
        }
    }
    if (job->do_cols && batch >= 0) NAME(flush)(job, batch, pval, pidx);
    free(pval), free(pidx), free(bound);
    return NULL;
}

/* Fold a block of scores into the running lists.
 *   score: (n, r, c) contiguous; score[b][i][j] is the score of point row0 + i against point col0 + j.
 *   val, idx: (n, p, k) contiguous lists of every point, sorted best first; empty slots (-inf, -1).
 *   do_rows: update the rows' lists with the block's columns; do_cols: the columns' lists with the block's rows
 *   (the two point ranges must then be disjoint). hw > 0: skip pairs in the same frame of hw points.
 * Returns 0, or -1 when memory or threads could not be had (the lists are then unspecified). */
int NAME(cpnet_knn_update)(const SCALAR *score, int64_t n, int64_t r, int64_t c, SCALAR *val, int64_t *idx,
                           int64_t p, int64_t k, int64_t row0, int64_t col0, int64_t hw, int do_rows, int do_cols,
                           int num_threads) {
    if (n <= 0 || r <= 0 || c <= 0) return 0;
    int64_t total = n * r;
    int threads = num_threads < 1 ? 1 : (num_threads > 64 ? 64 : num_threads);
    if (threads > total) threads = (int)total;
    SCALAR *bound0 = NULL;
    pthread_mutex_t *locks = (pthread_mutex_t *)malloc((size_t)n * sizeof(pthread_mutex_t));
    NAME(job_t) *jobs = (NAME(job_t) *)calloc((size_t)threads, sizeof(NAME(job_t)));
    pthread_t *tids = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
    int status = (locks && jobs && tids) ? 0 : -1;
    if (status == 0 && do_cols) {
        bound0 = (SCALAR *)malloc((size_t)(n * c) * sizeof(SCALAR));
        if (!bound0) status = -1;
        for (int64_t b = 0; status == 0 && b < n; b++)
            for (int64_t j = 0; j < c; j++) bound0[b * c + j] = val[(b * p + col0 + j) * k + k - 1];
    }
    if (status == 0) {
        for (int64_t b = 0; b < n; b++) pthread_mutex_init(&locks[b], NULL);
        int started = 0;
        int64_t next = 0, chunk = total / (8 * (int64_t)threads);
        chunk = chunk < 1 ? 1 : (chunk > 64 ? 64 : chunk);
        for (int t = 0; t < threads; t++) {
            NAME(job_t) job = {score, n, r, c, val, idx, p, k, row0, col0, hw, do_rows, do_cols, bound0, locks,
                               &next, total, chunk, 0};
            jobs[t] = job;
        }
        for (int t = 1; t < threads; t++) {
            if (pthread_create(&tids[t], NULL, NAME(work), &jobs[t]) != 0) break;
            started = t;
        }
        NAME(work)(&jobs[0]);
        for (int t = 1; t <= started; t++) pthread_join(tids[t], NULL);
        for (int t = 0; t < threads; t++) status |= jobs[t].failed ? -1 : 0;
        for (int64_t b = 0; b < n; b++) pthread_mutex_destroy(&locks[b]);
    }
    free(bound0), free(locks), free(jobs), free(tids);
    return status;
}
