// A Path-X sized batch (16,384 tokens, PAPERS.md 1.7's 4-layer, 4-head,
// radix-128 butterfly model) runs forward and backward on the CPU, and its
// peak memory stays far below what dense attention's scores alone would need.
#include <catch2/catch.hpp>

#include <iostream>

#include "autograd/node.h"
#include "core/storage.h"
#include "models/init.h"
#include "models/networks.h"
#include "ops/loss.h"

using namespace dimix;

TEST_CASE("pathx: a 16,384-token batch trains with butterfly attention within bounded memory", "[models][lra][pathx]") {
  init::seed(7);
  LRAConfig c;
  c.vocab = 512;
  c.max_len = 16384;
  c.dim = 64;
  c.hidden = 128;
  c.heads = 4;
  c.layers = 4;
  c.classes = 2;
  c.radix = 128;  // level 0: image rows, level 1 (stride 128): columns
  c.mixer = "butterfly-attention";
  c.attn_dropout = 0.1;
  LRATransformer net(c);
  const int64_t B = 2, S = c.max_len;
  Generator g(3);
  const Tensor tokens = randint(1, 257, {B, S}, DType::i64, &g);
  Allocator& alloc = allocator_for(DeviceKind::CPU);
  alloc.reset_peak();
  const size_t base = alloc.stats().current_bytes;
  const Tensor loss = cross_entropy(net.forward(tokens), from_vector<int64_t>({0, 1}, {2}));
  backward(loss);
  const double peak_mib = static_cast<double>(alloc.stats().peak_bytes - base) / (1 << 20);
  // Dense attention would hold B x H x S x S probabilities per layer for the
  // backward (f32), before counting the scores and their gradient.
  const double dense_probs_mib = static_cast<double>(B) * c.heads * S * S * 4 * c.layers / (1 << 20);
  std::cout << "pathx: B=" << B << " S=" << S << " butterfly forward+backward peak " << peak_mib
            << " MiB; dense attention probabilities alone would need " << dense_probs_mib << " MiB\n";
  CHECK(std::isfinite(loss.item()));
  CHECK(net.word->weight.grad().defined());
  CHECK(peak_mib < 3000);
  CHECK(peak_mib * 50 < dense_probs_mib);
}
