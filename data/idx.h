// IDX files (MNIST, Fashion-MNIST; LeCun's format, DATA.md section 8), raw or
// gzip. Header: magic 00 00 08 <ndims> (0x08 = unsigned byte), then ndims
// big-endian uint32 sizes, then the row-major bytes. Images are [N, 28, 28]
// (magic 00 00 08 03), labels [N] (00 00 08 01).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/image_dataset.h"

namespace dimix {

// The content of an unsigned-byte IDX file with `expected_dims` dimensions as
// one contiguous u8 tensor of the sizes its header declares. Errors name the
// file and the byte offset (and record) involved: missing file, wrong magic,
// a zero size, truncated data, or more data than the header declares.
Tensor read_idx_u8(const std::string& path, int expected_dims);

// Images [N, H, W] + labels [N] -> a dataset of u8 [1, H, W] images. Errors
// for a count mismatch (naming both files) and a label >= num_classes
// (naming the file, the record and its byte offset).
std::shared_ptr<InMemoryImageDataset> load_idx_dataset(const std::string& images_path,
                                                       const std::string& labels_path, int64_t num_classes,
                                                       const std::string& name);

// <root>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; split "train" or
// "test". An empty root means /usr/share/datasets/fashion-mnist (Debian's
// dataset-fashion-mnist) or /usr/share/datasets/mnist.
std::shared_ptr<InMemoryImageDataset> load_fashion_mnist(const std::string& root, const std::string& split);
std::shared_ptr<InMemoryImageDataset> load_mnist(const std::string& root, const std::string& split);

inline constexpr const char* kFashionMnistDefaultRoot = "/usr/share/datasets/fashion-mnist";
const std::vector<std::string>& fashion_mnist_class_names();

}  // namespace dimix
