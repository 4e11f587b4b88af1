// safetensors I/O: the checkpoint format shared with the Hugging Face
// ecosystem (https://github.com/huggingface/safetensors, "Format" section).
//
// A file is: 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON header,
// then the data section. The header maps each tensor name to
//   {"dtype": "F32"|"F64"|"I32"|"I64"|"U8", "shape": [d0, d1, ...],
//    "data_offsets": [begin, end]}
// (byte offsets relative to the data section, end - begin = numel * dtype
// size), plus an optional "__metadata__": {string: string}. Data are raw,
// row-major, little-endian. We pad the header with spaces to a multiple of 8
// so the data section stays 8-byte aligned, as the reference writer does.
//
// Tensors of any shape (0-d and empty included), strides and device are
// accepted; they are written contiguous from the CPU. Writes are atomic:
// path + ".tmp" is written, fsynced and renamed over path, so a crash never
// leaves a half-written checkpoint behind. Every load error names the file.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dimix {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsContents {
  NamedTensors tensors;                          // in file order (by data offset)
  std::map<std::string, std::string> metadata;  // "__metadata__", empty if absent

  bool contains(const std::string& name) const;
  // The tensor called `name`; Error naming it (and the file) when absent.
  const Tensor& at(const std::string& name) const;
  std::string path;  // the file it came from, for error messages
};

// Writes `tensors` (names unique, not "__metadata__") in the given order.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a whole file into fresh contiguous CPU tensors.
SafetensorsContents load_safetensors(const std::string& path);

// The safetensors dtype tag ("F32") of a dtype, and back (Error on unknown).
const char* safetensors_dtype_tag(DType dtype);

}  // namespace dimix
