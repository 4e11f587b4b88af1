// Communicator: the collectives data-parallel training needs, behind one
// small interface with four implementations:
//   single  one process (world of 1; every collective is a no-op or a copy),
//   threads one in-process group of W threads (tests; no MPI needed),
//   mpi     processes started by mpirun / srun, on CPU buffers (MPI, the
//           field's standard launcher and transport; Debian's OpenMPI),
//   nccl    CUDA buffers, on NCCL's own stream ordered after dimix's compute
//           stream, bootstrapped over another communicator (MPI).
//
// Contract of every collective: all ranks call the same collectives in the
// same order, with tensors of the same dtype and numel; buffers are
// contiguous. Tensors are handles, so "const Tensor&" arguments are written
// in place (as copy_ does).
//   all_reduce(t)               t[i] <- sum over ranks of t[i]
//   reduce_scatter(in, out)     in: W*n elements, out: n; out <- sum over
//                               ranks of chunk `rank` of in. out may alias
//                               that chunk of in (in-place, as NCCL allows).
//   all_gather(in, out)         in: n, out: W*n; chunk q of out <- rank q's in.
//                               in may alias chunk `rank` of out.
//   broadcast(t, root)          t <- root's t
//   barrier()
//
// Determinism: CPU sums are taken in rank order, ((x0 + x1) + x2) + ..., in
// the tensor's own dtype, whatever the transport, so results are the same
// bits on every run and every rank, and equal to a single process adding
// the same W contributions one after another (the training loop relies on
// this for bit-identical data parallelism; see apps/data_parallel_common.h).
// NCCL (GPU) sums follow NCCL's ring/tree order and are not bit-compared.
//
// Failure: a collective waits at most timeout() seconds for its peers, then
// throws dimix::Error naming the ranks it was still waiting for; the
// communicator is then broken and every later call throws at once. So a rank
// that dies or hangs makes the others exit with an error, not hang.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dimix::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Rank among the processes of this machine, and their number (pick a GPU,
  // share the cores). The threads and single backends: rank / world size.
  virtual int local_rank() const { return rank(); }
  virtual int local_size() const { return world_size(); }
  virtual std::string backend() const = 0;  // "single", "threads", "mpi", "nccl"

  virtual void all_reduce(const Tensor& t) = 0;
  virtual void reduce_scatter(const Tensor& input, const Tensor& output) = 0;
  virtual void all_gather(const Tensor& input, const Tensor& output) = 0;
  virtual void broadcast(const Tensor& t, int root) = 0;
  virtual void barrier() = 0;

  // Seconds a collective waits for its peers before it fails (default 300,
  // or the environment's DIMIX_DIST_TIMEOUT).
  void set_timeout(double seconds);
  double timeout() const { return timeout_; }

 protected:
  Communicator();
  // Argument checks shared by the backends; Error naming `op` and what came.
  void check_tensor(const char* op, const Tensor& t) const;
  void check_scatter_gather(const char* op, const Tensor& big, const Tensor& small) const;
  void check_root(const char* op, int root) const;

  double timeout_ = 300;
};

// A world of one.
std::shared_ptr<Communicator> single_process();

// W communicators of one in-process group, rank r at index r; each is to be
// used by one thread. A communicator destroyed while others still wait (its
// thread ended, e.g. by an exception) makes their collectives fail at once,
// naming its rank ("rank 1 left the group").
std::vector<std::shared_ptr<Communicator>> thread_group(int world_size);

// ---- MPI --------------------------------------------------------------------------------
// Whether this build has MPI / NCCL (CMake found them).
bool mpi_built();
bool nccl_built();
// Whether this process was started by an MPI launcher (mpirun, mpiexec, srun
// with PMI/PMIx), from the launcher's environment variables.
bool launched_by_mpi();
// The world of the processes started together: initialises MPI once per
// process (MPI_Finalize runs at exit). Error when built without MPI.
std::shared_ptr<Communicator> mpi_world();
// mpi_world() when launched_by_mpi(), else single_process(). A launch with
// more than one process in a build without MPI is an Error saying that
// distributed runs need MPI.
std::shared_ptr<Communicator> from_environment();
// Ends every process of the run after a fatal error on this one (MPI_Abort),
// so peers do not wait for a rank that is gone. Does nothing without MPI or
// in a world of one.
void abort_world(int exit_code);

// ---- NCCL -------------------------------------------------------------------------------
// A communicator of the same ranks as `bootstrap` for CUDA tensors on
// `cuda_device`, its NCCL id sent over `bootstrap` (collective over it). CPU
// tensors given to it go to `bootstrap`. Error when built without NCCL or
// CUDA.
std::shared_ptr<Communicator> nccl(std::shared_ptr<Communicator> bootstrap, int cuda_device);

// ---- helpers ----------------------------------------------------------------------------
// Sums `values` over ranks in rank order (one f64 all_reduce).
void all_reduce_values(Communicator& comm, std::vector<double>& values);

}  // namespace dimix::dist
