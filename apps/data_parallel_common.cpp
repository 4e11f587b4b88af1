// Data parallelism for the training loop (see data_parallel_common.h).
#include "apps/data_parallel_common.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <sstream>

#include "autograd/node.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "cuda/runtime.h"
#include "ops/elementwise.h"
#include "ops/loss.h"
#include "ops/reduce.h"

namespace dimix::app {

// ---- batches and shards ---------------------------------------------------------------

Batch slice_batch(const Batch& batch, int64_t begin, int64_t end) {
  DIMIX_CHECK(0 <= begin && begin <= end && end <= batch.size(), "slice_batch: rows [", begin, ", ", end,
              ") of a batch of ", batch.size());
  auto rows = [&](const Tensor& t) {
    if (!t.defined()) return t;
    Shape sizes = t.sizes();
    sizes[0] = end - begin;
    return t.as_strided(sizes, t.strides(), t.offset() + begin * t.stride(0));
  };
  Batch out;
  out.inputs = rows(batch.inputs);
  out.inputs2 = rows(batch.inputs2);
  out.labels = rows(batch.labels);
  out.indices.assign(batch.indices.begin() + begin, batch.indices.begin() + end);
  out.epoch = batch.epoch;
  out.batch_index = batch.batch_index;
  return out;
}

std::pair<int64_t, int64_t> shard_range(int64_t m, int64_t parts, int64_t index) {
  const int64_t base = m / parts, extra = m % parts;
  const int64_t begin = index * base + std::min(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

uint64_t shard_seed(uint64_t seed, int64_t shard) {
  // splitmix64 of (seed, shard): distinct, well-mixed Philox keys per shard.
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(shard + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int64_t correct_predictions(const Tensor& logits, const Tensor& labels) {
  if (labels.numel() == 0) return 0;
  const auto pred = argmax(logits, 1).to_vector<int64_t>();
  const auto lab = labels.to_vector<int64_t>();
  int64_t c = 0;
  for (size_t i = 0; i < pred.size(); ++i) c += pred[i] == lab[i];
  return c;
}

// ---- DataParallel ---------------------------------------------------------------------

namespace {

Tensor clone(const Tensor& t) {
  Tensor c = empty(t.sizes(), t.dtype(), t.device());
  copy_(c, t);
  return c;
}

// dst += src elementwise (same shape and dtype; dst contiguous).
void add_into(const Tensor& dst, const Tensor& src) {
  if (dst.device().is_cuda()) {
    copy_(dst, add(dst, src));
    return;
  }
  const Tensor s = src.is_contiguous() ? src : src.contiguous_raw();
  dispatch_float(dst.dtype(), "data parallel: gradient accumulation", [&]<class T>() {
    T* d = dst.data<T>();
    const T* g = s.data<T>();
    parallel_for(0, dst.numel(), 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) d[i] = d[i] + g[i];
    });
  });
}

}  // namespace

DataParallel::DataParallel(const std::vector<std::pair<std::string, Tensor>>& params,
                           const std::vector<ParamGroupSpec>& groups, dist::Communicator& comm,
                           dist::Communicator& buffer_comm, const DataParallelOptions& options)
    : comm_(comm), buffer_comm_(buffer_comm), options_(options) {
  DIMIX_CHECK(comm.world_size() == buffer_comm.world_size() && comm.rank() == buffer_comm.rank(),
              "data parallel: the host and buffer communicators disagree (rank ", comm.rank(), " of ",
              comm.world_size(), " vs rank ", buffer_comm.rank(), " of ", buffer_comm.world_size(), ")");
  DIMIX_CHECK(options.bucket_bytes > 0, "data parallel: bucket size must be positive, got ", options.bucket_bytes);
  std::map<const TensorImpl*, size_t> index_of;
  for (const auto& [name, p] : params) {
    index_of[p.impl_ptr().get()] = params_.size();
    params_.push_back(p);
    names_.push_back(name);
  }
  const int W = comm.world_size();
  owner_.assign(params_.size(), 0);
  has_grad_.assign(params_.size(), 0);

  // Buckets: consecutive parameters of one dtype and device, up to
  // bucket_bytes (a larger parameter gets a bucket of its own).
  std::vector<std::vector<size_t>> members;
  int64_t bytes = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (!p.requires_grad()) continue;
    DIMIX_CHECK(is_floating(p.dtype()), "data parallel: parameter ", names_[i], " is ", dtype_name(p.dtype()),
                " (floating parameters expected)");
    const int64_t pb = p.numel() * static_cast<int64_t>(dtype_size(p.dtype()));
    const bool fits = !members.empty() && bytes + pb <= options.bucket_bytes &&
                      params_[members.back().front()].dtype() == p.dtype() &&
                      params_[members.back().front()].device() == p.device();
    if (!fits) {
      members.emplace_back();
      bytes = 0;
    }
    members.back().push_back(i);
    bytes += pb;
  }
  std::vector<int64_t> total_load(W, 0);
  for (const auto& m : members) {
    Bucket b;
    const Tensor& first = params_[m.front()];
    if (options.zero1) {
      // Whole parameters to the rank with the least in this bucket (then
      // overall, then the lowest rank): balanced chunks, little padding.
      std::vector<int64_t> load(W, 0);
      std::vector<std::pair<size_t, int64_t>> placed;  // (param, offset within its owner's chunk)
      for (size_t i : m) {
        int best = 0;
        for (int q = 1; q < W; ++q)
          if (std::make_pair(load[q], total_load[q]) < std::make_pair(load[best], total_load[best])) best = q;
        owner_[i] = best;
        placed.emplace_back(i, load[best]);
        load[best] += params_[i].numel();
        total_load[best] += params_[i].numel();
      }
      b.chunk = *std::max_element(load.begin(), load.end());
      for (const auto& [i, off] : placed) b.slots.push_back({i, owner_[i] * b.chunk + off});
      b.flat = zeros({W * b.chunk}, first.dtype(), first.device());
    } else {
      int64_t off = 0;
      for (size_t i : m) {
        b.slots.push_back({i, off});
        off += params_[i].numel();
      }
      b.flat = zeros({off}, first.dtype(), first.device());
    }
    buckets_.push_back(std::move(b));
  }

  // The optimizer's (group, index) of every parameter, and this rank's share.
  for (size_t g = 0; g < groups.size(); ++g) {
    members_.emplace_back();
    local_index_.emplace_back();
    for (size_t j = 0; j < groups[g].params.size(); ++j) {
      auto it = index_of.find(groups[g].params[j].impl_ptr().get());
      DIMIX_CHECK(it != index_of.end(), "data parallel: parameter ", j, " of optimizer group ", g,
                  " is not one of the model's parameters");
      members_[g].push_back(it->second);
      if (owns(it->second)) local_index_[g].push_back(j);
    }
  }
}

Tensor DataParallel::region(const Bucket& b, const Slot& s, const Tensor& flat) const {
  const Tensor& p = params_[s.param];
  return flat.as_strided(p.sizes(), contiguous_strides(p.sizes()), flat.offset() + s.offset);
}

Tensor DataParallel::own_chunk(const Bucket& b, const Tensor& flat) const {
  return flat.as_strided({b.chunk}, {1}, flat.offset() + comm_.rank() * b.chunk);
}

std::vector<ParamGroupSpec> DataParallel::local_groups(const std::vector<ParamGroupSpec>& groups) const {
  DIMIX_CHECK(groups.size() == members_.size(), "data parallel: ", groups.size(), " optimizer groups given, ",
              members_.size(), " at construction");
  std::vector<ParamGroupSpec> out;
  for (size_t g = 0; g < groups.size(); ++g) {
    ParamGroupSpec spec = groups[g];
    spec.params.clear();
    spec.names.clear();
    for (size_t j : local_index_[g]) {
      spec.params.push_back(groups[g].params[j]);
      if (!groups[g].names.empty()) spec.names.push_back(groups[g].names[j]);
    }
    out.push_back(std::move(spec));
  }
  return out;
}

void DataParallel::broadcast_parameters() {
  if (world_size() == 1) return;
  NoGradGuard ng;
  for (Bucket& b : buckets_) {
    for (const Slot& s : b.slots) copy_(region(b, s, b.flat), params_[s.param]);
    buffer_comm_.broadcast(b.flat, 0);
    for (const Slot& s : b.slots) copy_(params_[s.param], region(b, s, b.flat));
  }
  // Frozen parameters are in no bucket (they have no gradients); one call each.
  for (const Tensor& p : params_) {
    if (p.requires_grad()) continue;
    const Tensor t = p.is_contiguous() ? p : p.contiguous_raw();
    buffer_comm_.broadcast(t, 0);
    if (!t.same(p)) copy_(p, t);
  }
}

void DataParallel::accumulate_gradients(bool first) {
  NoGradGuard ng;
  for (Bucket& b : buckets_) {
    for (const Slot& s : b.slots) {
      const Tensor& p = params_[s.param];
      const Tensor r = region(b, s, b.flat);
      const Tensor g = p.grad();
      if (first) has_grad_[s.param] = 0;
      if (!g.defined()) {
        if (first) fill_(r, 0.0);
        continue;
      }
      DIMIX_CHECK(g.sizes() == p.sizes() && g.dtype() == p.dtype(), "data parallel: the gradient of ", names_[s.param],
                  " is ", dtype_name(g.dtype()), " ", g.shape_str(), ", its parameter ", dtype_name(p.dtype()), " ",
                  p.shape_str());
      if (first) copy_(r, g);
      else add_into(r, g);  // onto the sum so far (zeros if no micro-batch had one yet)
      has_grad_[s.param] = 1;
      p.zero_grad();
    }
  }
}

void DataParallel::reduce(std::vector<double>& scalars) {
  const size_t n = scalars.size();
  std::vector<double> v = scalars;
  for (char h : has_grad_) v.push_back(h ? 1.0 : 0.0);
  dist::all_reduce_values(comm_, v);
  std::copy(v.begin(), v.begin() + n, scalars.begin());
  for (Bucket& b : buckets_) {
    if (options_.zero1) buffer_comm_.reduce_scatter(b.flat, own_chunk(b, b.flat));
    else buffer_comm_.all_reduce(b.flat);
    for (const Slot& s : b.slots) {
      const Tensor& p = params_[s.param];
      if (v[n + s.param] > 0 && owns(s.param)) p.set_grad(region(b, s, b.flat));
      else p.zero_grad();
    }
  }
}

double DataParallel::clip_grad_norm(double max_norm) {
  if (!options_.zero1) return clip_grad_norm_(params_, max_norm);
  DIMIX_CHECK(max_norm > 0, "clip_grad_norm_: expected max_norm > 0, got ", max_norm);
  NoGradGuard ng;
  // Every parameter with a gradient anywhere gets slots for its squared
  // norm: CPU ones per 4096-element block, summed in block order exactly as
  // clip_grad_norm_ does, CUDA ones one slot. Owners fill their slots; one
  // all-reduce (x + 0 is exact) gives every rank the same partials.
  constexpr int64_t kBlock = 4096;
  std::vector<int64_t> first_slot(params_.size(), -1);
  std::vector<char> any_grad(params_.size(), 0);
  {
    std::vector<double> flags(params_.size(), 0.0);
    for (size_t i = 0; i < params_.size(); ++i) flags[i] = params_[i].grad().defined() ? 1.0 : 0.0;
    dist::all_reduce_values(comm_, flags);
    for (size_t i = 0; i < params_.size(); ++i) any_grad[i] = flags[i] > 0;
  }
  int64_t slots = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!any_grad[i]) continue;
    first_slot[i] = slots;
    slots += params_[i].device().is_cuda() ? 1 : (params_[i].numel() + kBlock - 1) / kBlock;
  }
  std::vector<double> partial(static_cast<size_t>(slots), 0.0);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    if (g.device().is_cuda()) {
      partial[first_slot[i]] = cast_raw(sum(square(g)), DType::f64).item();
      continue;
    }
    DIMIX_CHECK(g.is_contiguous(), "data parallel: gradient of ", names_[i], " is not contiguous");
    const int64_t n = g.numel();
    dispatch_float(g.dtype(), "clip_grad_norm_", [&]<class T>() {
      const T* G = g.data<T>();
      parallel_for(0, (n + kBlock - 1) / kBlock, 4, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          double acc = 0;
          const int64_t end = std::min(n, (k + 1) * kBlock);
          for (int64_t j = k * kBlock; j < end; ++j) acc += static_cast<double>(G[j]) * static_cast<double>(G[j]);
          partial[first_slot[i] + k] = acc;
        }
      });
    });
  }
  dist::all_reduce_values(comm_, partial);
  double total_sq = 0;
  for (double v : partial) total_sq += v;
  const double total = std::sqrt(total_sq);
  const double coef = max_norm / (total + 1e-6);
  if (!std::isfinite(total) || !(coef < 1.0)) return total;
  for (const Tensor& p : params_) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.device().is_cuda()) {
      copy_(g, mul(g, coef));
      continue;
    }
    dispatch_float(g.dtype(), "clip_grad_norm_", [&]<class T>() {
      T* G = g.data<T>();
      const T c = static_cast<T>(coef);
      parallel_for(0, g.numel(), 1 << 15, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) G[j] = G[j] * c;
      });
    });
  }
  return total;
}

void DataParallel::gather_parameters() {
  if (!options_.zero1 || world_size() == 1) return;
  NoGradGuard ng;
  for (Bucket& b : buckets_) {
    for (const Slot& s : b.slots)
      if (owns(s.param)) copy_(region(b, s, b.flat), params_[s.param]);
    buffer_comm_.all_gather(own_chunk(b, b.flat), b.flat);
    for (const Slot& s : b.slots)
      if (!owns(s.param)) copy_(params_[s.param], region(b, s, b.flat));
  }
}

std::vector<std::string> DataParallel::buffer_names(const std::string& type) {
  if (type == "SGD") return {"momentum_buffer"};
  if (type == "Adam" || type == "AdamW") return {"exp_avg", "exp_avg_sq"};
  DIMIX_FAIL("data parallel: ZeRO-1 does not know the state of a ", type, " optimizer");
}

namespace {
std::string state_key(size_t g, size_t i) { return "state." + std::to_string(g) + "." + std::to_string(i); }
bool is_group_scalar(const std::string& k) { return k.rfind("group.", 0) == 0; }
}  // namespace

OptimizerState DataParallel::full_state(const Optimizer& local) {
  OptimizerState ls = local.state_dict();
  if (!options_.zero1) return ls;
  NoGradGuard ng;
  const std::vector<std::string> bufs = buffer_names(ls.type);
  OptimizerState fs;
  fs.type = ls.type;
  for (const auto& [k, v] : ls.scalars)
    if (k == "step_count" || k == "num_groups" || is_group_scalar(k)) fs.scalars[k] = v;
  // Per (group, index): [has state, step, has buffer b...], filled by owners.
  const size_t per = 2 + bufs.size();
  std::vector<size_t> base(members_.size(), 0);
  size_t total = 0;
  for (size_t g = 0; g < members_.size(); ++g) {
    fs.scalars["group." + std::to_string(g) + ".num_params"] = static_cast<double>(members_[g].size());
    base[g] = total;
    total += members_[g].size() * per;
  }
  std::vector<double> info(total, 0.0);
  for (size_t g = 0; g < members_.size(); ++g)
    for (size_t j = 0; j < local_index_[g].size(); ++j) {
      const std::string lk = state_key(g, j);
      auto it = ls.scalars.find(lk + ".step");
      if (it == ls.scalars.end()) continue;
      double* slot = &info[base[g] + local_index_[g][j] * per];
      slot[0] = 1;
      slot[1] = it->second;
      for (size_t b = 0; b < bufs.size(); ++b) slot[2 + b] = ls.tensors.count(lk + "." + bufs[b]) ? 1.0 : 0.0;
    }
  dist::all_reduce_values(comm_, info);
  // Where each parameter sits in the optimizer, to name its state.
  std::vector<std::pair<size_t, size_t>> where(params_.size(), {SIZE_MAX, 0});
  std::vector<size_t> local_pos(params_.size(), SIZE_MAX);
  for (size_t g = 0; g < members_.size(); ++g) {
    for (size_t i = 0; i < members_[g].size(); ++i) where[members_[g][i]] = {g, i};
    for (size_t j = 0; j < local_index_[g].size(); ++j) local_pos[members_[g][local_index_[g][j]]] = j;
  }
  for (size_t g = 0; g < members_.size(); ++g)
    for (size_t i = 0; i < members_[g].size(); ++i) {
      const double* slot = &info[base[g] + i * per];
      if (slot[0] > 0) fs.scalars[state_key(g, i) + ".step"] = slot[1];
    }
  // The buffers travel through the buckets' layout: owners fill their
  // chunk, one all-gather per bucket and buffer.
  for (size_t bi = 0; bi < bufs.size(); ++bi) {
    for (Bucket& b : buckets_) {
      Tensor tmp = zeros(b.flat.sizes(), b.flat.dtype(), b.flat.device());
      for (const Slot& s : b.slots) {
        if (!owns(s.param) || where[s.param].first == SIZE_MAX) continue;
        auto it = ls.tensors.find(state_key(where[s.param].first, local_pos[s.param]) + "." + bufs[bi]);
        if (it != ls.tensors.end()) copy_(region(b, s, tmp), it->second);
      }
      buffer_comm_.all_gather(own_chunk(b, tmp), tmp);
      for (const Slot& s : b.slots) {
        const auto [g, i] = where[s.param];
        if (g == SIZE_MAX || info[base[g] + i * per + 2 + bi] == 0) continue;
        fs.tensors[state_key(g, i) + "." + bufs[bi]] = clone(region(b, s, tmp));
      }
    }
  }
  return fs;
}

OptimizerState DataParallel::local_state(const OptimizerState& full) const {
  if (!options_.zero1) return full;
  const std::vector<std::string> bufs = buffer_names(full.type);
  OptimizerState ls;
  ls.type = full.type;
  for (const auto& [k, v] : full.scalars)
    if (k == "step_count" || k == "num_groups" || is_group_scalar(k)) ls.scalars[k] = v;
  for (size_t g = 0; g < local_index_.size(); ++g) {
    ls.scalars["group." + std::to_string(g) + ".num_params"] = static_cast<double>(local_index_[g].size());
    for (size_t j = 0; j < local_index_[g].size(); ++j) {
      const std::string fk = state_key(g, local_index_[g][j]), lk = state_key(g, j);
      if (auto it = full.scalars.find(fk + ".step"); it != full.scalars.end()) ls.scalars[lk + ".step"] = it->second;
      for (const auto& b : bufs)
        if (auto it = full.tensors.find(fk + "." + b); it != full.tensors.end()) ls.tensors[lk + "." + b] = it->second;
    }
  }
  return ls;
}

// ---- one step -------------------------------------------------------------------------

StepStats data_parallel_step(Network& model, const Batch& batch, int64_t global_count, Device device,
                             double label_smoothing, uint64_t seed, int64_t step, int micro_batches,
                             DataParallel* dp, bool stop_request) {
  const int W = dp ? dp->world_size() : 1, r = dp ? dp->rank() : 0, K = micro_batches;
  DIMIX_CHECK(K >= 1, "train: micro-batches must be at least 1, got ", K);
  DIMIX_CHECK(dp || K == 1, "data_parallel_step: micro-batches need a DataParallel");
  DIMIX_CHECK(global_count > 0, "data_parallel_step: empty global batch");
  const int64_t S = static_cast<int64_t>(W) * K;
  for (const Tensor& p : model.parameters()) p.zero_grad();
  // Per shard: loss sum, correct, count; then the stop votes.
  std::vector<double> v(static_cast<size_t>(3 * S + 1), 0.0);
  v[3 * S] = stop_request ? 1.0 : 0.0;
  const double inv_count = 1.0 / static_cast<double>(global_count);
  for (int k = 0; k < K; ++k) {
    const auto [begin, end] = shard_range(batch.size(), K, k);
    const int64_t s = static_cast<int64_t>(r) * K + k;
    // The shard's own stream, restarted every step; this thread's default
    // while the shard runs (ranks may be threads of one process).
    Generator shard_rng;
    shard_rng.set_state(shard_seed(seed, s), static_cast<uint64_t>(step) << 40);
    const GeneratorScope scope(shard_rng);
    if (end > begin) {
      const Batch part = K == 1 ? batch : slice_batch(batch, begin, end);
      const Tensor logits = forward_batch(model, part, device);
      const Tensor labels = device.is_cpu() ? part.labels : to_device_raw(part.labels, device);
      const Tensor loss_sum = cross_entropy(logits, labels, label_smoothing, "sum");
      v[s] = loss_sum.item();
      v[S + s] = static_cast<double>(correct_predictions(logits, part.labels));
      v[2 * S + s] = static_cast<double>(end - begin);
      backward(mul(loss_sum, inv_count));
    }
    if (dp) dp->accumulate_gradients(k == 0);
  }
  if (dp) dp->reduce(v);
  StepStats st;
  for (int64_t s = 0; s < S; ++s) {
    st.loss += v[s];
    st.correct += v[S + s];
    st.count += v[2 * S + s];
  }
  DIMIX_CHECK(st.count == static_cast<double>(global_count), "train: the ranks' batches hold ", st.count,
              " examples, expected ", global_count, " (were the loaders built for this rank and world size?)");
  st.loss /= static_cast<double>(global_count);
  st.stop = v[3 * S] > 0;
  return st;
}

// ---- for the training binaries ----------------------------------------------------------

int run_distributed_main(const std::function<int(std::shared_ptr<dist::Communicator>)>& body) {
  std::shared_ptr<dist::Communicator> comm;
  const int code = run_main([&] {
    comm = dist::from_environment();
    return body(comm);
  });
  if (code != 0 && comm && comm->world_size() > 1) dist::abort_world(code);
  return code;
}

void add_distributed_flags(Flags& f) {
  f.add("micro-batches", "1",
        "forward/backward passes per rank and step (gradient accumulation); 1 process with N micro-batches computes "
        "the bits of N processes (mpirun -np N)");
  f.add_bool("zero1", "shard the optimizer state over the ranks (ZeRO stage 1)");
  f.add("bucket-mb", "25", "gradient bucket size in MiB (one collective per bucket)");
  f.add("dist-timeout", "300", "seconds a collective waits for the other ranks before failing");
}

DistributedSetup setup_distributed(const Flags& f, std::shared_ptr<dist::Communicator> comm,
                                   const std::string& device_flag, int64_t global_batch, const std::string& program) {
  DistributedSetup s;
  s.comm = std::move(comm);
  const int W = s.comm->world_size();
  s.comm->set_timeout(f.real("dist-timeout"));
  s.micro_batches = static_cast<int>(f.integer("micro-batches"));
  DIMIX_CHECK(s.micro_batches >= 1, program, ": --micro-batches must be at least 1, got ", s.micro_batches);
  DIMIX_CHECK(f.real("bucket-mb") > 0, program, ": --bucket-mb must be positive, got ", f.real("bucket-mb"));
  // Ranks on one machine share its cores (mpirun may also have bound each
  // rank to its own core(s), which OpenMP then sees as all there is).
  if (f.integer("threads") > 0) set_num_threads(static_cast<int>(f.integer("threads")));
  else if (s.comm->local_size() > 1) set_num_threads(std::max(1, get_num_threads() / s.comm->local_size()));
  DIMIX_CHECK(global_batch > 0 && global_batch % W == 0, program, ": --batch-size ", global_batch,
              " is the global batch, shared by the ", W, " ranks: it must be a positive multiple of ", W);
  s.rank_batch = global_batch / W;
  s.device = Device::parse(device_flag);
  if (s.device.is_cuda() && device_flag == "cuda" && W > 1 && cuda::device_count() > 0)
    s.device = Device::cuda(s.comm->local_rank() % cuda::device_count());
  if (s.device.is_cuda() && W > 1 && cuda::available()) {
    if (dist::nccl_built()) s.device_comm = dist::nccl(s.comm, s.device.index);
    else if (s.comm->rank() == 0)
      std::cout << "note: built without NCCL: gradients go through host memory and MPI" << std::endl;
  }
  return s;
}

void apply_distributed(const Flags& f, const DistributedSetup& s, TrainConfig& c) {
  c.comm = s.comm;
  c.device_comm = s.device_comm;
  c.device = s.device;
  c.micro_batches = s.micro_batches;
  c.zero1 = f.flag("zero1");
  c.bucket_mb = f.real("bucket-mb");
}

std::string distributed_summary(const DistributedSetup& s, const TrainConfig& c) {
  std::ostringstream os;
  const int W = s.comm ? s.comm->world_size() : 1;
  if (W > 1) os << W << " ranks (" << s.comm->backend() << (s.device_comm ? " + nccl" : "") << ") x " << s.rank_batch;
  if (c.micro_batches > 1) os << (W > 1 ? ", " : "") << c.micro_batches << " micro-batches";
  if (c.zero1) os << ", ZeRO-1";
  return os.str();
}

}  // namespace dimix::app
