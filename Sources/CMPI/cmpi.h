// The MPI C API for Swift (Open MPI, Debian's libopenmpi-dev). MPI's handles
// are macros Swift cannot import; these inline functions return them.
#ifndef PARRY_CMPI_H
#define PARRY_CMPI_H
#include <mpi.h>

static inline MPI_Comm parry_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype parry_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype parry_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype parry_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype parry_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype parry_mpi_int(void) { return MPI_INT; }
static inline MPI_Op parry_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op parry_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op parry_mpi_min(void) { return MPI_MIN; }
static inline void *parry_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline void *parry_mpi_bottom(void) { return MPI_BOTTOM; }
static inline int parry_mpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline int parry_mpi_success(void) { return MPI_SUCCESS; }
static inline int parry_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int parry_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline MPI_Errhandler parry_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int parry_mpi_status_source(const MPI_Status *s) { return s->MPI_SOURCE; }
static inline int parry_mpi_status_tag(const MPI_Status *s) { return s->MPI_TAG; }
#endif
