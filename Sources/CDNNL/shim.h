#ifndef MOE_CDNNL_SHIM_H
#define MOE_CDNNL_SHIM_H
/* oneDNN's C API (Debian's libdnnl-dev, which has no pkg-config file). Debian builds it with the OpenMP
 * runtime (DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP in dnnl_config.h): its thread count is OpenMP's, set per
 * calling thread, so the OpenMP entry points moe-eval needs are declared here. */
#include <oneapi/dnnl/dnnl.h>
void omp_set_num_threads(int num_threads);
int omp_get_max_threads(void);
#endif
