// File reading for the dataset loaders: one reader for raw and gzip files
// (zlib's gzread passes non-gzip files through unchanged), which keeps count
// of the decompressed byte offset so every format error can name where it is.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dimix::data {

class GzFile {
 public:
  // Error naming the path (and the system's reason) if it cannot be opened.
  explicit GzFile(const std::string& path);
  ~GzFile();
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to n bytes; fewer only at the end of the data. A corrupt or
  // truncated gzip stream is an Error naming the path and the offset.
  size_t read(void* dst, size_t n);
  // Reads exactly n bytes or throws an Error naming the path, `what` was being
  // read and the offset where the data ended.
  void read_exact(void* dst, size_t n, const std::string& what);
  // Decompressed bytes consumed so far.
  uint64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* gz_ = nullptr;  // gzFile, kept opaque so zlib.h stays out of headers
  uint64_t offset_ = 0;
};

// The whole (decompressed) content of a file.
std::vector<uint8_t> read_file_bytes(const std::string& path);

bool file_exists(const std::string& path);
// "dir/name": joins with one slash.
std::string join_path(const std::string& dir, const std::string& name);

}  // namespace dimix::data
