// Every CUDA kernel that library code asks for by name is registered, with
// the exact signature the caller uses (core/kernel_table.h). Runs in any
// CUDA build, GPU or not: registration happens at start-up, no device needed.
//
// Two checks: (1) the names are scanned from the sources at test time
// (every cuda_kernel<...>("name") call in core/, ops/, models/, data/,
// apps/), so a new call site without a kernel fails here, not on a GPU
// machine mid-training; (2) a fixed list of (name, signature) pairs, which
// also catches a signature drifting between caller and kernel.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "core/kernel_table.h"
#include "core/tensor.h"
#include "models/optim.h"

using namespace dimix;
namespace fs = std::filesystem;

namespace {

// The repository root, from this file's own path (CMake compiles it by
// absolute path): <root>/tests/ops/this_file.cpp.
fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

// The string literals inside the argument list of each cuda_kernel<...>(...)
// in `text` (the name may be a literal or a conditional between literals).
std::set<std::string> kernel_names_in(const std::string& text) {
  std::set<std::string> names;
  const std::string tag = "cuda_kernel<";
  for (size_t at = text.find(tag); at != std::string::npos; at = text.find(tag, at + 1)) {
    size_t i = at + tag.size();
    for (int depth = 1; i < text.size() && depth > 0; ++i) {
      if (text[i] == '<') ++depth;
      if (text[i] == '>') --depth;
    }
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size() || text[i] != '(') continue;  // a declaration, not a call
    size_t j = i + 1;
    for (int depth = 1; j < text.size() && depth > 0; ++j) {
      if (text[j] == '(') ++depth;
      if (text[j] == ')') --depth;
    }
    const std::string args = text.substr(i + 1, j - i - 2);
    for (size_t q = args.find('"'); q != std::string::npos; q = args.find('"', q + 1)) {
      const size_t e = args.find('"', q + 1);
      if (e == std::string::npos) break;
      names.insert(args.substr(q + 1, e - q - 1));
      q = e;
    }
  }
  return names;
}

std::set<std::string> scan_sources(const fs::path& root) {
  std::set<std::string> names;
  for (const char* folder : {"core", "ops", "models", "data", "apps", "autograd"}) {
    if (!fs::exists(root / folder)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / folder)) {
      if (entry.path().extension() != ".cpp" && entry.path().extension() != ".h") continue;
      std::ifstream in(entry.path());
      std::stringstream ss;
      ss << in.rdbuf();
      for (const std::string& n : kernel_names_in(ss.str())) names.insert(n);
    }
  }
  return names;
}

template <class Fn>
void check_signature(const char* name) {
  INFO("kernel " << name);
  CHECK_NOTHROW(cuda_kernel<Fn>(name));
}

using T_ = const Tensor&;

}  // namespace

TEST_CASE("cuda kernels: the source scanner finds call sites", "[cuda]") {
  const auto names = kernel_names_in(
      "x; cuda_kernel<void(const Tensor&, int)>(\"one\")(a, 1);\n"
      "cuda_kernel<void(A<B>)>(\n    flag ? \"two\" : \"three\")(b);\n"
      "template <class Fn> Fn* cuda_kernel(const std::string& name);");
  CHECK(names == std::set<std::string>{"one", "two", "three"});
}

TEST_CASE("cuda kernels: every kernel named by library code is registered", "[cuda]") {
  if (!cuda_built()) {
    WARN("SKIPPED: dimix was built without CUDA; no kernels are registered");
    SUCCEED();
    return;
  }
  const auto used = scan_sources(repo_root());
  INFO("sources scanned under " << repo_root());
  REQUIRE(used.size() >= 30);  // the scan really found the call sites
  for (const std::string& name : used) {
    INFO("kernel \"" << name << "\" is called by library code but no CUDA kernel is registered under it");
    CHECK(has_kernel(name));
  }
  // And nothing registered is left unused (a renamed call site would leave
  // its old kernel behind).
  for (const std::string& name : registered_kernels()) {
    INFO("kernel \"" << name << "\" is registered but never called");
    CHECK(used.count(name) == 1);
  }
}

TEST_CASE("cuda kernels: registered signatures match their callers", "[cuda]") {
  if (!cuda_built()) {
    WARN("SKIPPED: dimix was built without CUDA; no kernels are registered");
    SUCCEED();
    return;
  }
  check_signature<void(T_, T_)>("copy_strided");
  check_signature<void(T_, double)>("fill");
  check_signature<void(T_, T_, T_, int)>("binary");
  check_signature<void(T_, T_, int, double)>("unary");
  check_signature<void(T_, T_, T_, T_, int, double)>("unary_backward");
  check_signature<void(T_, T_, double)>("not_equal_scalar");
  check_signature<void(T_, T_)>("sum");
  check_signature<void(T_, T_, T_, int64_t)>("max");
  check_signature<void(T_, T_, T_, bool, bool)>("bmm");
  check_signature<void(T_, T_, int64_t, T_)>("index_select");
  check_signature<void(T_, int64_t, T_, T_)>("index_add");
  check_signature<void(T_, int64_t, T_, T_)>("scatter_add");
  check_signature<void(T_, T_, int64_t, T_)>("gather");
  check_signature<void(T_, T_, T_, T_)>("where");
  check_signature<void(T_, T_, int64_t, bool)>("softmax_forward");
  check_signature<void(T_, T_, T_, int64_t, bool)>("softmax_backward");
  check_signature<void(T_, T_, T_, T_, T_, T_, double)>("layer_norm_forward");
  check_signature<void(T_, T_, T_, T_, T_, T_, T_, T_)>("layer_norm_backward");
  check_signature<void(T_, T_, T_, T_, double, int64_t)>("cross_entropy_forward");
  check_signature<void(T_, T_, T_, T_, T_, double, double, int64_t)>("cross_entropy_backward");
  check_signature<void(T_, T_, T_)>("embedding_forward");
  check_signature<void(T_, T_, T_)>("embedding_backward");
  check_signature<void(T_, T_, double, uint64_t, uint64_t)>("dropout_forward");
  check_signature<void(T_, T_, int64_t)>("unfold_patches");
  check_signature<void(T_, T_, int64_t)>("fold_patches");
  check_signature<void(T_, T_)>("resize_bilinear_forward");
  check_signature<void(T_, T_)>("resize_bilinear_backward");
  check_signature<void(T_, T_, T_, T_, int64_t, int64_t)>("block_linear_forward");
  check_signature<void(T_, T_, T_, int64_t, int64_t)>("block_linear_backward_weight");
  check_signature<void(T_, T_, T_, T_, int64_t, int64_t, int64_t)>("conv2d_forward");
  check_signature<void(T_, T_, T_, T_, T_, T_, int64_t, int64_t, int64_t)>("conv2d_backward");
  check_signature<void(T_, T_, int64_t, double)>("rfft");
  check_signature<void(T_, T_, int64_t, double)>("irfft");
  check_signature<void(T_, T_, int64_t, bool, double)>("fft_c2c");
  check_signature<void(T_, T_, int64_t, bool)>("topk_indices");
  check_signature<void(T_, T_, T_, T_, T_, T_, T_, T_, int64_t, double)>("sparse_attention_forward");
  check_signature<void(T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, int64_t, double)>("sparse_attention_backward");
  check_signature<void(T_, T_, T_, const SgdStepArgs&)>("sgd_step");
  check_signature<void(T_, T_, T_, T_, const AdamStepArgs&)>("adam_step");
  check_signature<void(T_, T_, T_, T_, const AdamStepArgs&)>("adamw_step");
  // A wrong signature is an Error, not undefined behaviour.
  CHECK_THROWS_WITH(cuda_kernel<void(T_)>("binary"), Catch::Contains("different signature"));
  CHECK_THROWS_WITH(cuda_kernel<void(T_)>("no_such_kernel"), Catch::Contains("no CUDA kernel is registered"));
}
