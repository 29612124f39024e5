#define _GNU_SOURCE
#include "CCUDA.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

void *moe_cuda_open(const char *path, int global, char *error, size_t error_capacity) {
    dlerror();
    void *handle = dlopen(path, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL));
    if (handle == NULL && error != NULL && error_capacity > 0) {
        const char *text = dlerror();
        strncpy(error, text != NULL ? text : "dlopen failed", error_capacity - 1);
        error[error_capacity - 1] = '\0';
    }
    return handle;
}

void moe_cuda_close(void *handle) {
    if (handle != NULL) dlclose(handle);
}

// The table's fields are filled in declaration order from these names, so each list must follow its struct.
#define MOE_BIND(table, names)                                                         \
    do {                                                                               \
        void **slots = (void **)(table);                                               \
        size_t count = sizeof(names) / sizeof((names)[0]);                             \
        _Static_assert(sizeof(*(table)) == sizeof(names) / sizeof((names)[0]) * sizeof(void *), \
                       "symbol list and function table differ in length");             \
        for (size_t i = 0; i < count; i++) {                                           \
            void *symbol = dlsym(handle, (names)[i]);                                  \
            if (symbol == NULL) return (names)[i];                                     \
            slots[i] = symbol;                                                         \
        }                                                                              \
        return NULL;                                                                   \
    } while (0)

static const char *const driver_symbols[] = {
    "cuInit", "cuDriverGetVersion", "cuGetErrorString", "cuGetErrorName",
    "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetAttribute", "cuDeviceGetName", "cuDeviceTotalMem_v2",
    "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease_v2", "cuCtxSetCurrent",
    "cuMemAlloc_v2", "cuMemFree_v2", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuMemcpyDtoD_v2",
    "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2", "cuMemcpyDtoDAsync_v2", "cuMemsetD8Async",
    "cuStreamCreate", "cuStreamSynchronize", "cuStreamDestroy_v2",
    "cuModuleLoadData", "cuModuleGetFunction", "cuModuleUnload", "cuFuncSetAttribute", "cuLaunchKernel",
    "cuEventCreate", "cuEventRecord", "cuEventSynchronize", "cuEventElapsedTime", "cuEventDestroy_v2",
};

static const char *const cublas_symbols[] = {
    "cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetMathMode", "cublasGetVersion_v2",
    "cublasGetStatusString", "cublasGemmEx", "cublasGemmStridedBatchedEx",
};

static const char *const nvrtc_symbols[] = {
    "nvrtcVersion", "nvrtcGetErrorString", "nvrtcGetNumSupportedArchs", "nvrtcGetSupportedArchs",
    "nvrtcCreateProgram", "nvrtcCompileProgram", "nvrtcGetProgramLogSize", "nvrtcGetProgramLog",
    "nvrtcGetCUBINSize", "nvrtcGetCUBIN", "nvrtcGetPTXSize", "nvrtcGetPTX", "nvrtcDestroyProgram",
};

const char *moe_cuda_bind_driver(void *handle, MoECUDADriverAPI *api) { MOE_BIND(api, driver_symbols); }
const char *moe_cuda_bind_cublas(void *handle, MoECUBLASAPI *api) { MOE_BIND(api, cublas_symbols); }
const char *moe_cuda_bind_nvrtc(void *handle, MoENVRTCAPI *api) { MOE_BIND(api, nvrtc_symbols); }

int moe_cuda_loaded_path(void *handle, char *path, size_t capacity) {
    struct link_map *map = NULL;
    if (handle == NULL || capacity == 0 || dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || map == NULL ||
        map->l_name == NULL)
        return -1;
    strncpy(path, map->l_name, capacity - 1);
    path[capacity - 1] = '\0';
    return 0;
}
