#ifndef MOE_CCUDA_H
#define MOE_CCUDA_H

#include <stddef.h>

/// The few CUDA driver, cuBLAS and NVRTC declarations moe-eval uses, written out here so that nothing of CUDA is
/// needed at build time: the libraries are opened with dlopen at run time and their functions reached through the
/// tables below. Values are those of the public CUDA headers (stable ABI since CUDA 11); symbol names are the ones
/// the libraries export (`_v2` where the headers map a name onto one).

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUevent_st *CUevent;

#define MOE_CUDA_SUCCESS 0
#define MOE_CUDA_ERROR_NO_DEVICE 100

/// CUdevice_attribute values read by CUDAContext.
#define MOE_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define MOE_CU_DEVICE_ATTRIBUTE_CLOCK_RATE 13
#define MOE_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE 36
#define MOE_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH 37
#define MOE_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define MOE_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define MOE_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN 97

/// CUfunction_attribute: dynamic shared memory above the default 48 KiB must be opted into per function.
#define MOE_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8

#define MOE_CU_STREAM_NON_BLOCKING 1
#define MOE_CU_EVENT_DEFAULT 0

typedef struct {
    CUresult (*cuInit)(unsigned int flags);
    CUresult (*cuDriverGetVersion)(int *version);
    CUresult (*cuGetErrorString)(CUresult error, const char **text);
    CUresult (*cuGetErrorName)(CUresult error, const char **text);
    CUresult (*cuDeviceGetCount)(int *count);
    CUresult (*cuDeviceGet)(CUdevice *device, int ordinal);
    CUresult (*cuDeviceGetAttribute)(int *value, int attribute, CUdevice device);
    CUresult (*cuDeviceGetName)(char *name, int length, CUdevice device);
    CUresult (*cuDeviceTotalMem)(size_t *bytes, CUdevice device);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *context, CUdevice device);
    CUresult (*cuDevicePrimaryCtxRelease)(CUdevice device);
    CUresult (*cuCtxSetCurrent)(CUcontext context);
    CUresult (*cuMemAlloc)(CUdeviceptr *address, size_t bytes);
    CUresult (*cuMemFree)(CUdeviceptr address);
    CUresult (*cuMemcpyHtoD)(CUdeviceptr destination, const void *source, size_t bytes);
    CUresult (*cuMemcpyDtoH)(void *destination, CUdeviceptr source, size_t bytes);
    CUresult (*cuMemcpyDtoD)(CUdeviceptr destination, CUdeviceptr source, size_t bytes);
    CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr destination, const void *source, size_t bytes, CUstream stream);
    CUresult (*cuMemcpyDtoHAsync)(void *destination, CUdeviceptr source, size_t bytes, CUstream stream);
    CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr destination, CUdeviceptr source, size_t bytes, CUstream stream);
    CUresult (*cuMemsetD8Async)(CUdeviceptr destination, unsigned char value, size_t count, CUstream stream);
    CUresult (*cuStreamCreate)(CUstream *stream, unsigned int flags);
    CUresult (*cuStreamSynchronize)(CUstream stream);
    CUresult (*cuStreamDestroy)(CUstream stream);
    CUresult (*cuModuleLoadData)(CUmodule *module, const void *image);
    CUresult (*cuModuleGetFunction)(CUfunction *function, CUmodule module, const char *name);
    CUresult (*cuModuleUnload)(CUmodule module);
    CUresult (*cuFuncSetAttribute)(CUfunction function, int attribute, int value);
    CUresult (*cuLaunchKernel)(CUfunction function, unsigned int gridX, unsigned int gridY, unsigned int gridZ,
                               unsigned int blockX, unsigned int blockY, unsigned int blockZ,
                               unsigned int sharedMemoryBytes, CUstream stream, void **parameters, void **extra);
    CUresult (*cuEventCreate)(CUevent *event, unsigned int flags);
    CUresult (*cuEventRecord)(CUevent event, CUstream stream);
    CUresult (*cuEventSynchronize)(CUevent event);
    CUresult (*cuEventElapsedTime)(float *milliseconds, CUevent start, CUevent end);
    CUresult (*cuEventDestroy)(CUevent event);
} MoECUDADriverAPI;

typedef struct cublasContext *cublasHandle_t;
typedef int cublasStatus_t;

#define MOE_CUBLAS_STATUS_SUCCESS 0
/// cublasOperation_t
#define MOE_CUBLAS_OP_N 0
#define MOE_CUBLAS_OP_T 1
/// cudaDataType_t
#define MOE_CUDA_R_32F 0
#define MOE_CUDA_R_16BF 14
/// cublasComputeType_t
#define MOE_CUBLAS_COMPUTE_32F 68
/// cublasMath_t
#define MOE_CUBLAS_DEFAULT_MATH 0
#define MOE_CUBLAS_PEDANTIC_MATH 2
/// cublasGemmAlgo_t
#define MOE_CUBLAS_GEMM_DEFAULT -1

typedef struct {
    cublasStatus_t (*cublasCreate)(cublasHandle_t *handle);
    cublasStatus_t (*cublasDestroy)(cublasHandle_t handle);
    cublasStatus_t (*cublasSetStream)(cublasHandle_t handle, CUstream stream);
    cublasStatus_t (*cublasSetMathMode)(cublasHandle_t handle, int mode);
    cublasStatus_t (*cublasGetVersion)(cublasHandle_t handle, int *version);
    const char *(*cublasGetStatusString)(cublasStatus_t status);
    cublasStatus_t (*cublasGemmEx)(cublasHandle_t handle, int transA, int transB, int m, int n, int k,
                                   const void *alpha, const void *a, int aType, int lda,
                                   const void *b, int bType, int ldb, const void *beta,
                                   void *c, int cType, int ldc, int computeType, int algorithm);
    cublasStatus_t (*cublasGemmStridedBatchedEx)(cublasHandle_t handle, int transA, int transB, int m, int n, int k,
                                                 const void *alpha, const void *a, int aType, int lda, long long strideA,
                                                 const void *b, int bType, int ldb, long long strideB, const void *beta,
                                                 void *c, int cType, int ldc, long long strideC, int batchCount,
                                                 int computeType, int algorithm);
} MoECUBLASAPI;

typedef struct _nvrtcProgram *nvrtcProgram;
typedef int nvrtcResult;

#define MOE_NVRTC_SUCCESS 0

typedef struct {
    nvrtcResult (*nvrtcVersion)(int *major, int *minor);
    const char *(*nvrtcGetErrorString)(nvrtcResult result);
    nvrtcResult (*nvrtcGetNumSupportedArchs)(int *count);
    nvrtcResult (*nvrtcGetSupportedArchs)(int *archs);
    nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram *program, const char *source, const char *name, int headerCount,
                                      const char *const *headers, const char *const *includeNames);
    nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram program, int optionCount, const char *const *options);
    nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram program, size_t *size);
    nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram program, char *log);
    nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram program, size_t *size);
    nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram program, char *cubin);
    nvrtcResult (*nvrtcGetPTXSize)(nvrtcProgram program, size_t *size);
    nvrtcResult (*nvrtcGetPTX)(nvrtcProgram program, char *ptx);
    nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram *program);
} MoENVRTCAPI;

/// Opens a library by path (or by bare name through the dynamic loader's search), RTLD_NOW | RTLD_LOCAL, or
/// `global` != 0 for RTLD_GLOBAL. Returns NULL and copies dlerror()'s text into `error` on failure.
void *moe_cuda_open(const char *path, int global, char *error, size_t error_capacity);

/// Closes a handle from moe_cuda_open.
void moe_cuda_close(void *handle);

/// Resolve every function of a table from an opened library. Return NULL when all were found, else the exported
/// name of the first one missing (a static string).
const char *moe_cuda_bind_driver(void *handle, MoECUDADriverAPI *api);
const char *moe_cuda_bind_cublas(void *handle, MoECUBLASAPI *api);
const char *moe_cuda_bind_nvrtc(void *handle, MoENVRTCAPI *api);

/// The file the dynamic loader opened for a handle (what a bare name resolved to), copied into `path`.
/// Returns 0, or -1 when it is not known.
int moe_cuda_loaded_path(void *handle, char *path, size_t capacity);

#endif
