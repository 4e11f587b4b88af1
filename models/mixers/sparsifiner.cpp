// sparsifiner: Sparsifiner attention as a token mixer (PAPERS.md 3;
// models/sparsifiner.h): x [B, S, D] -> [B, S, D] with S fixed at
// construction (the predictor's token projections are [S, S // 6]).
// Defaults of the authors' run: 25% of the keys per query row, REDUCE_N 6,
// REDUCE_C 2, basis threshold 2e-2, top-8 basis coefficients. Position 0 is
// the CLS row and stays dense; in a network without a CLS token (the LRA
// transformer) it is simply the first token. Attention dropout is not
// applied (the authors' forward does not use attn_drop).
#include "models/mixer.h"
#include "models/sparsifiner.h"

namespace dimix {

DIMIX_REGISTER_MIXER("sparsifiner",
                     "Sparsifiner attention: each query keeps the top 25% keys of a learned low-rank predictor "
                     "(CLS row dense)",
                     [](const MixerSpec& s) -> std::shared_ptr<Mixer> {
                       DIMIX_CHECK(s.axis == 1, "sparsifiner: mixes tokens (axis 1), got axis ", s.axis);
                       SparsifinerOptions o;
                       o.tokens = s.n;
                       o.dim = s.features;
                       o.heads = s.heads;
                       return std::make_shared<SparsifinerAttention>(o);
                     });

}  // namespace dimix
