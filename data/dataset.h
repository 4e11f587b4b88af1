// Dataset: a sized collection of examples. An example is a tensor of
// features (uint8 pixels, float values or int64 tokens) and an int64 label;
// LRA retrieval examples carry a second input.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace dimix {

struct Example {
  Tensor input;   // e.g. u8 [C, H, W] or i64 [S]
  Tensor input2;  // second document (retrieval), else undefined
  int64_t label = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Thread-safe: called from DataLoader workers.
  virtual Example get(int64_t index) const = 0;
  virtual int64_t num_classes() const = 0;
  virtual std::string name() const = 0;
};

}  // namespace dimix
