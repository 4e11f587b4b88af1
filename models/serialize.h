// Module state dicts and training checkpoints, stored as safetensors
// (core/safetensors.h).
//
// A module's state is its parameters then its buffers, under their dotted
// names ("blocks.3.token_mlp.fc1.weight"), as PyTorch's state_dict. Loading
// copies into the existing tensors (so optimizers holding them stay valid)
// only after every name, shape and dtype has been checked; the Error lists
// every mismatch at once, on one line.
//
// A checkpoint is one file holding a module ("model." + name), an optimizer's
// state ("optim." + key, its scalars as exact decimal metadata "optim." + key)
// and anything else the caller wants to resume with ("extra." + name, both
// tensors and metadata: data-loader position, RNG state, epoch, ...).
#pragma once
#include <map>
#include <string>

#include "core/safetensors.h"
#include "models/module.h"
#include "models/optim.h"

namespace dimix {

// Parameters then buffers, by dotted name (the tensors themselves, not copies).
NamedTensors module_state(const Module& module);

// Copies `state` into the module. strict: names must match exactly (missing
// and unexpected keys are errors); otherwise they are ignored. Shape and
// dtype mismatches are always errors. `source` names the origin in messages.
void load_module_state(Module& module, const NamedTensors& state, bool strict = true,
                       const std::string& source = "state dict");

void save_module(const Module& module, const std::string& path, const std::map<std::string, std::string>& metadata = {});
// Returns the file's metadata.
std::map<std::string, std::string> load_module(Module& module, const std::string& path, bool strict = true);

// What a checkpoint carries besides the model and the optimizer.
struct CheckpointExtras {
  NamedTensors tensors;
  std::map<std::string, std::string> metadata;
};

// `optimizer` may be null (inference checkpoints).
void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer,
                     const CheckpointExtras& extras = {});
// Restores the model (strictly, or not) and, when `optimizer` is not null, its
// state, which the file must then hold. Returns the extras.
CheckpointExtras load_checkpoint(const std::string& path, Module& model, Optimizer* optimizer, bool strict = true);

}  // namespace dimix
