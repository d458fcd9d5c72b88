/* Running top-k selection for cpnet's cross-frame kNN (cpnet/ops/knn.py, cpnet/ops/native.py).
 *
 * torch computes each block of scores s = -||x_p - x_q||^2 with one matmul; this code folds the block into the
 * running k-best lists of its rows and of its columns in one pass over the block. A list is k (value, index)
 * pairs sorted from best (largest value) down, an empty slot being (-inf, -1). Almost every score loses to its
 * lists' current worst entries, so a pass costs about one comparison per score and per direction, against
 * torch.topk's copy-and-select of every row.
 *
 * Threads split the flattened (batch, row) range of a block. Each row's list belongs to one thread; the columns'
 * lists are shared, so every thread collects column candidates in private lists (pruned by the shared lists'
 * worst values, snapshot before the threads start) and merges them in under a per-batch lock.
 *
 * Plain C with a C ABI, loaded by ctypes: no Python or torch headers, so it compiles in well under a second.
 * The scalar type comes from the including file: knn_select_impl.h is included once for float, once for double.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Scores are tested in groups of LANES before any list is touched. */
#define LANES 16

#define SCALAR float
#define NAME(x) x##_f32
#include "knn_select_impl.h"
#undef SCALAR
#undef NAME

#define SCALAR double
#define NAME(x) x##_f64
#include "knn_select_impl.h"
#undef SCALAR
#undef NAME

/* The ABI version the Python loader checks, so a stale cached library is never used with newer callers. */
int cpnet_knn_abi_version(void) { return 1; }
