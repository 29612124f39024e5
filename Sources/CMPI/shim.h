// What Swift cannot see in mpi.h: Open MPI spells its predefined handles as macros that take the address of
// a global (`MPI_COMM_WORLD` is `((MPI_Comm) &ompi_mpi_comm_world)`), which the Clang importer drops.
#ifndef MOE_EVAL_CMPI_SHIM_H
#define MOE_EVAL_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm moe_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype moe_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype moe_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype moe_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype moe_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Op moe_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op moe_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op moe_mpi_min(void) { return MPI_MIN; }
static inline MPI_Errhandler moe_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int moe_mpi_success(void) { return MPI_SUCCESS; }
static inline int moe_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int moe_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }

#endif
