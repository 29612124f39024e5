#ifndef MOE_CBLAS_SHIM_H
#define MOE_CBLAS_SHIM_H
#if defined(__APPLE__)
#define ACCELERATE_NEW_LAPACK 1
#include <Accelerate/Accelerate.h>
#define MOE_BLAS_ACCELERATE 1
#else
#include <cblas.h>
/* OpenBLAS thread control; declared in openblas_config.h / cblas.h of OpenBLAS. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
#endif
#endif
