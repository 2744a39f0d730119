// The peer of parry's allreduce_10M row: MPI_Allreduce of 10M floats (sum)
// called directly from C, best of 5 after a warm-up, timed on rank 0.
//   mpicc -O2 -o allreduce scripts/bench/allreduce.c && mpirun -np 2 ./allreduce
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const int n = 10000000;
    float *send = malloc(sizeof(float) * n), *recv = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) send[i] = (float)(i % 1000) * 0.001f + (float)rank;
    MPI_Allreduce(send, recv, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t = MPI_Wtime();
        MPI_Allreduce(send, recv, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        t = MPI_Wtime() - t;
        if (t < best) best = t;
    }
    if (rank == 0) printf("allreduce_10M\t%.9g\tMPI_Allreduce called from C\n", best);
    free(send); free(recv);
    MPI_Finalize();
    return 0;
}
