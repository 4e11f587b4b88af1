// CIFAR-10 and CIFAR-100 in their binary releases (DATA.md section 5).
// CIFAR-10: data_batch_{1..5}.bin (train), test_batch.bin; records of
// <label><3072 pixels> = 3073 bytes. CIFAR-100: train.bin, test.bin; records of
// <coarse label><fine label><3072 pixels> = 3074 bytes. Pixels are the R, G and
// B planes of a 32x32 image, each row-major, so a record's pixels are already
// an image [3, 32, 32].
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/image_dataset.h"

namespace dimix {

// <root>/data_batch_{1..5}.bin or <root>/test_batch.bin (also found under
// <root>/cifar-10-batches-bin/). Split "train" or "test".
std::shared_ptr<InMemoryImageDataset> load_cifar10(const std::string& root, const std::string& split);
// <root>/{train,test}.bin (also under <root>/cifar-100-binary/): fine labels
// (100 classes) by default, coarse (20) when `coarse`.
std::shared_ptr<InMemoryImageDataset> load_cifar100(const std::string& root, const std::string& split,
                                                    bool coarse = false);

// The reader behind both: records of `label_bytes` label bytes then 3072
// pixels. `label_names[k]`/`label_classes[k]` describe label byte k (for
// validation and messages); byte `use_label` becomes the example's label.
// A file whose size is not a multiple of the record size is an Error naming
// the file and its size; a label out of range names the file, record and
// byte offset.
std::shared_ptr<InMemoryImageDataset> load_cifar_files(const std::vector<std::string>& files,
                                                       const std::vector<std::string>& label_names,
                                                       const std::vector<int64_t>& label_classes,
                                                       int use_label, const std::string& name);

}  // namespace dimix
