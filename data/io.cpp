// Raw/gzip file reading through zlib (see io.h).
#include "data/io.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/stat.h>

#include "core/error.h"

namespace dimix::data {

namespace {
// zlib's message without the "<path>: " it puts in front.
std::string zlib_message(const char* msg, const std::string& path) {
  std::string m = msg ? msg : "zlib error";
  if (m.rfind(path + ": ", 0) == 0) m = m.substr(path.size() + 2);
  return m;
}
}  // namespace

GzFile::GzFile(const std::string& path) : path_(path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) DIMIX_FAIL("cannot open file '", path, "': ", std::strerror(errno));
  DIMIX_CHECK(!S_ISDIR(st.st_mode), "cannot open file '", path, "': it is a directory");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) DIMIX_FAIL("cannot open file '", path, "': ", errno ? std::strerror(errno) : "zlib could not open it");
  gzbuffer(f, 1 << 18);
  gz_ = f;
}

GzFile::~GzFile() {
  if (gz_) gzclose(static_cast<gzFile>(gz_));
}

size_t GzFile::read(void* dst, size_t n) {
  gzFile f = static_cast<gzFile>(gz_);
  size_t done = 0;
  char* p = static_cast<char*>(dst);
  while (done < n) {
    // gzread takes an unsigned count; read large requests in 1 GiB pieces.
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, size_t(1) << 30));
    const int got = gzread(f, p + done, chunk);
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      DIMIX_FAIL("file '", path_, "': corrupt compressed data near decompressed byte offset ", offset_ + done,
                 ": ", zlib_message(msg, path_));
    }
    if (got == 0) {
      // End of data. A gzip stream cut short shows up here as Z_BUF_ERROR.
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      if (errnum != Z_OK)
        DIMIX_FAIL("file '", path_, "': truncated or corrupt compressed data at decompressed byte offset ",
                   offset_ + done, ": ", zlib_message(msg, path_));
      break;
    }
    done += static_cast<size_t>(got);
  }
  offset_ += done;
  return done;
}

void GzFile::read_exact(void* dst, size_t n, const std::string& what) {
  const uint64_t start = offset_;
  const size_t got = read(dst, n);
  DIMIX_CHECK(got == n, "file '", path_, "': truncated: ", what, " needs ", n, " bytes from byte offset ", start,
              " but the data ends at byte offset ", start + got);
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  GzFile f(path);
  // A raw file decompresses to its own size (one more byte sees the end); a
  // gzip one to more, so the buffer doubles as needed.
  struct stat st;
  size_t cap = (::stat(path.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0) + 1;
  std::vector<uint8_t> bytes(cap);
  size_t used = 0;
  for (;;) {
    if (used == bytes.size()) bytes.resize(bytes.size() * 2);
    const size_t got = f.read(bytes.data() + used, bytes.size() - used);
    if (got == 0) break;
    used += got;
  }
  bytes.resize(used);
  return bytes;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

}  // namespace dimix::data
