// IDX reading (see idx.h). The pixel bytes are decompressed straight into the
// one tensor that holds the whole set: no per-image allocations.
#include "data/idx.h"

#include <cstdio>
#include <cstring>

#include "data/io.h"

namespace dimix {

namespace {

std::string hex_bytes(const uint8_t* b, int n) {
  std::string s;
  char buf[4];
  for (int i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", b[i]);
    if (i) s += ' ';
    s += buf;
  }
  return s;
}

}  // namespace

Tensor read_idx_u8(const std::string& path, int expected_dims) {
  data::GzFile f(path);
  uint8_t magic[4];
  const size_t got = f.read(magic, 4);
  DIMIX_CHECK(got == 4, "idx: file '", path, "': truncated: the 4-byte magic number at byte offset 0 ends at byte offset ",
              got);
  const uint8_t want[4] = {0, 0, 0x08, static_cast<uint8_t>(expected_dims)};
  DIMIX_CHECK(std::memcmp(magic, want, 4) == 0, "idx: file '", path, "': wrong magic number at byte offset 0: expected ",
              hex_bytes(want, 4), " (unsigned bytes, ", expected_dims, " dims), got ", hex_bytes(magic, 4));

  Shape sizes(expected_dims);
  for (int d = 0; d < expected_dims; ++d) {
    uint8_t be[4];
    const uint64_t at = f.offset();
    DIMIX_CHECK(f.read(be, 4) == 4, "idx: file '", path, "': truncated: header size ", d, " at byte offset ", at,
                " is cut off (the data ends at byte offset ", f.offset(), ")");
    sizes[d] = (int64_t(be[0]) << 24) | (int64_t(be[1]) << 16) | (int64_t(be[2]) << 8) | int64_t(be[3]);
    DIMIX_CHECK(d == 0 || sizes[d] > 0, "idx: file '", path, "': header size ", d, " at byte offset ", at,
                " is 0; expected a positive size");
  }
  const uint64_t header = f.offset();
  const int64_t records = sizes[0];
  int64_t record_bytes = 1;
  for (int d = 1; d < expected_dims; ++d) record_bytes *= sizes[d];
  DIMIX_CHECK(record_bytes <= (int64_t(1) << 32) && records * record_bytes <= (int64_t(1) << 38), "idx: file '", path,
              "': header declares an implausible ", shape_str(sizes), " bytes");

  Tensor out = empty(sizes, DType::u8);
  uint8_t* p = out.data<uint8_t>();
  const size_t want_bytes = static_cast<size_t>(records * record_bytes);
  const size_t read_bytes = f.read(p, want_bytes);
  if (read_bytes < want_bytes) {
    DIMIX_FAIL("idx: file '", path, "': truncated: the header declares ", records, " records of ", record_bytes,
               " bytes (data up to byte offset ", header + want_bytes, ") but the data ends at byte offset ",
               header + read_bytes, ", inside record ", static_cast<int64_t>(read_bytes) / record_bytes);
  }
  uint8_t extra;
  if (f.read(&extra, 1) != 0) {
    DIMIX_FAIL("idx: file '", path, "': wrong record count: the header declares ", records, " records of ",
               record_bytes, " bytes, ending at byte offset ", header + want_bytes,
               ", but the file has more data at byte offset ", header + want_bytes);
  }
  return out;
}

std::shared_ptr<InMemoryImageDataset> load_idx_dataset(const std::string& images_path,
                                                       const std::string& labels_path, int64_t num_classes,
                                                       const std::string& name) {
  Tensor images = read_idx_u8(images_path, 3);
  Tensor labels = read_idx_u8(labels_path, 1);
  const int64_t n = images.size(0);
  DIMIX_CHECK(labels.size(0) == n, name, ": image file '", images_path, "' holds ", n, " records but label file '",
              labels_path, "' holds ", labels.size(0));
  const uint8_t* pl = labels.data<uint8_t>();
  std::vector<int64_t> label_values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    DIMIX_CHECK(pl[i] < num_classes, name, ": file '", labels_path, "': label ", int(pl[i]), " of record ", i,
                " (byte offset ", 8 + i, ") is out of range [0, ", num_classes, ")");
    label_values[static_cast<size_t>(i)] = pl[i];
  }
  // [N, H, W] -> [N, 1, H, W]: the same contiguous buffer.
  Tensor nchw = images.as_strided({n, 1, images.size(1), images.size(2)},
                                  {images.size(1) * images.size(2), images.size(1) * images.size(2), images.size(2), 1},
                                  0);
  return std::make_shared<InMemoryImageDataset>(name, nchw, std::move(label_values), num_classes);
}

namespace {

// The .gz file if present, else the raw one, else the .gz name (so the error names it).
std::string idx_file(const std::string& root, const std::string& stem) {
  const std::string gz = data::join_path(root, stem + ".gz");
  if (data::file_exists(gz)) return gz;
  const std::string raw = data::join_path(root, stem);
  if (data::file_exists(raw)) return raw;
  return gz;
}

std::shared_ptr<InMemoryImageDataset> load_idx_split(const std::string& root, const std::string& split,
                                                     const std::string& name) {
  DIMIX_CHECK(split == "train" || split == "test", name, ": unknown split '", split, "'; expected train or test");
  const std::string prefix = split == "train" ? "train" : "t10k";
  return load_idx_dataset(idx_file(root, prefix + "-images-idx3-ubyte"), idx_file(root, prefix + "-labels-idx1-ubyte"),
                          10, name);
}

}  // namespace

std::shared_ptr<InMemoryImageDataset> load_fashion_mnist(const std::string& root, const std::string& split) {
  return load_idx_split(root.empty() ? kFashionMnistDefaultRoot : root, split, "fashion-mnist");
}

std::shared_ptr<InMemoryImageDataset> load_mnist(const std::string& root, const std::string& split) {
  return load_idx_split(root.empty() ? "/usr/share/datasets/mnist" : root, split, "mnist");
}

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

}  // namespace dimix
