// CIFAR binary reading (see cifar.h). Records are split as they are read:
// labels to a vector, pixels appended to one buffer that becomes the
// dataset's [N, 3, 32, 32] tensor without another copy.
#include "data/cifar.h"

#include <cstring>

#include "data/io.h"

namespace dimix {

namespace {

constexpr int64_t kPixels = 3 * 32 * 32;

// <root>/<name> if <root>/<first> exists, else under the release's folder name.
std::string cifar_dir(const std::string& root, const std::string& first, const std::string& release_dir,
                      const std::string& name) {
  DIMIX_CHECK(!root.empty(), name, ": no data directory given; expected the folder holding ", first);
  if (data::file_exists(data::join_path(root, first))) return root;
  const std::string nested = data::join_path(root, release_dir);
  if (data::file_exists(data::join_path(nested, first))) return nested;
  return root;  // the reader's error names <root>/<first>
}

}  // namespace

std::shared_ptr<InMemoryImageDataset> load_cifar_files(const std::vector<std::string>& files,
                                                       const std::vector<std::string>& label_names,
                                                       const std::vector<int64_t>& label_classes,
                                                       int use_label, const std::string& name) {
  const int64_t label_bytes = static_cast<int64_t>(label_classes.size());
  DIMIX_CHECK(label_names.size() == label_classes.size() && use_label >= 0 && use_label < label_bytes, name,
              ": bad label layout (", label_names.size(), " names, ", label_classes.size(), " classes, use ",
              use_label, ")");
  const int64_t record = label_bytes + kPixels;
  auto pixels = new std::vector<uint8_t>();
  std::unique_ptr<std::vector<uint8_t>> pixels_owner(pixels);
  std::vector<int64_t> labels;
  for (const std::string& path : files) {
    const std::vector<uint8_t> bytes = data::read_file_bytes(path);
    const int64_t size = static_cast<int64_t>(bytes.size());
    DIMIX_CHECK(size % record == 0, name, ": file '", path, "' has ", size, " bytes, not a multiple of the ", record,
                "-byte record (", label_bytes, " label byte", label_bytes > 1 ? "s" : "", " + ", kPixels,
                " pixels); the last record is cut off at byte offset ", size - size % record);
    const int64_t n = size / record;
    pixels->reserve(pixels->size() + static_cast<size_t>(n * kPixels));
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* rec = bytes.data() + i * record;
      for (int64_t k = 0; k < label_bytes; ++k) {
        DIMIX_CHECK(rec[k] < label_classes[k], name, ": file '", path, "' record ", i, " (byte offset ", i * record + k,
                    "): ", label_names[k], " label ", int(rec[k]), " is out of range [0, ", label_classes[k], ")");
      }
      labels.push_back(rec[use_label]);
      pixels->insert(pixels->end(), rec + label_bytes, rec + record);
    }
  }
  const int64_t n = static_cast<int64_t>(labels.size());
  uint8_t* data = pixels->data();
  Tensor images = from_blob(data, {n, 3, 32, 32}, DType::u8, Device::cpu(),
                            [owner = pixels_owner.release()](void*) { delete owner; });
  return std::make_shared<InMemoryImageDataset>(name, images, std::move(labels), label_classes[use_label]);
}

std::shared_ptr<InMemoryImageDataset> load_cifar10(const std::string& root, const std::string& split) {
  DIMIX_CHECK(split == "train" || split == "test", "cifar10: unknown split '", split, "'; expected train or test");
  const std::string first = split == "train" ? "data_batch_1.bin" : "test_batch.bin";
  const std::string dir = cifar_dir(root, first, "cifar-10-batches-bin", "cifar10");
  std::vector<std::string> files;
  if (split == "train") {
    for (int b = 1; b <= 5; ++b) files.push_back(data::join_path(dir, "data_batch_" + std::to_string(b) + ".bin"));
  } else {
    files.push_back(data::join_path(dir, "test_batch.bin"));
  }
  return load_cifar_files(files, {"class"}, {10}, 0, "cifar10");
}

std::shared_ptr<InMemoryImageDataset> load_cifar100(const std::string& root, const std::string& split, bool coarse) {
  DIMIX_CHECK(split == "train" || split == "test", "cifar100: unknown split '", split, "'; expected train or test");
  const std::string file = split + ".bin";
  const std::string dir = cifar_dir(root, file, "cifar-100-binary", "cifar100");
  return load_cifar_files({data::join_path(dir, file)}, {"coarse", "fine"}, {20, 100}, coarse ? 0 : 1, "cifar100");
}

}  // namespace dimix
