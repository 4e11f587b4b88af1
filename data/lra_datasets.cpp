// The LRA loaders (see lra_datasets.h). ListOps, Text and Image are held in
// memory as bytes (one buffer, offsets per example) and widened to int64
// tokens in get(); Retrieval indexes its TSV once and reads a line per get()
// (pread, thread-safe), since the AAN pairs are large; Pathfinder keeps the
// metadata and decodes one PNG per get().
#include "data/lra_datasets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "data/cifar.h"
#include "data/io.h"
#include "data/lra_listops.h"
#include "data/png.h"

namespace dimix {

namespace fs = std::filesystem;

namespace {

void check_split(const std::string& task, const std::string& split) {
  DIMIX_CHECK(split == "train" || split == "val" || split == "test", task, ": unknown split '", split,
              "'; expected train, val or test");
}

void check_lengths(const std::string& task, LRALengths l) {
  DIMIX_CHECK(l.max_length > 0 && l.seq_len >= l.max_length, task, ": sequence lengths must satisfy 0 < max_length <= ",
              "seq_len, got max_length ", l.max_length, ", seq_len ", l.seq_len);
}

// Examples as bytes in one buffer; token = byte + `shift`, padded with 0.
class ByteTokenDataset final : public Dataset {
 public:
  ByteTokenDataset(std::string name, int64_t seq_len, int64_t classes, int shift)
      : name_(std::move(name)), seq_len_(seq_len), classes_(classes), shift_(shift) {}

  // Appends an example, keeping at most seq_len bytes.
  void add(const uint8_t* bytes, size_t n, int64_t label) {
    n = std::min<size_t>(n, static_cast<size_t>(seq_len_));
    data_.insert(data_.end(), bytes, bytes + n);
    offsets_.push_back(static_cast<int64_t>(data_.size()));
    labels_.push_back(label);
  }
  void reserve(size_t examples, size_t bytes) {
    offsets_.reserve(examples + 1);
    labels_.reserve(examples);
    data_.reserve(bytes);
  }

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  Example get(int64_t index) const override {
    DIMIX_CHECK(index >= 0 && index < size(), name_, ": index ", index, " out of range [0, ", size(), ")");
    Example ex;
    ex.input = zeros({seq_len_}, DType::i64);
    int64_t* out = ex.input.data<int64_t>();
    const int64_t b = offsets_[static_cast<size_t>(index)], e = offsets_[static_cast<size_t>(index) + 1];
    for (int64_t i = b; i < e; ++i) out[i - b] = static_cast<int64_t>(data_[static_cast<size_t>(i)]) + shift_;
    ex.label = labels_[static_cast<size_t>(index)];
    return ex;
  }
  int64_t num_classes() const override { return classes_; }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  int64_t seq_len_, classes_;
  int shift_;
  std::vector<uint8_t> data_;
  std::vector<int64_t> offsets_{0};
  std::vector<int64_t> labels_;
};

// Splits the (decompressed) content into lines: "\n" ends a line, one
// trailing "\r" is dropped; a final line without "\n" counts, an empty tail
// does not.
template <class F>
void for_each_line(const std::vector<uint8_t>& bytes, F&& fn) {
  size_t begin = 0;
  int64_t number = 1;
  while (begin < bytes.size()) {
    const void* nl = std::memchr(bytes.data() + begin, '\n', bytes.size() - begin);
    const size_t end = nl ? static_cast<size_t>(static_cast<const uint8_t*>(nl) - bytes.data()) : bytes.size();
    size_t stop = end;
    if (stop > begin && bytes[stop - 1] == '\r') --stop;
    fn(std::string_view(reinterpret_cast<const char*>(bytes.data()) + begin, stop - begin), number);
    ++number;
    begin = end + 1;
  }
}

std::string first_chars(std::string_view s, size_t n = 60) {
  std::string t(s.substr(0, n));
  if (s.size() > n) t += "...";
  return t;
}

int64_t natural_id(const std::string& name) {
  int64_t v = 0;
  size_t i = 0;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9' && i < 15; ++i) v = v * 10 + (name[i] - '0');
  return i == 0 ? -1 : v;
}

}  // namespace

// ---- shared pieces -----------------------------------------------------------------------

uint8_t tf_rgb_to_gray(uint8_t r, uint8_t g, uint8_t b) {
  // convert_image_dtype(uint8 -> float32) multiplies by float32(1/255); the
  // weights are float32; back to uint8 multiplies by 255.5 and truncates.
  const float s = static_cast<float>(1.0 / 255.0);
  const float fr = static_cast<float>(r) * s, fg = static_cast<float>(g) * s, fb = static_cast<float>(b) * s;
  const float y = fr * 0.2989f + fg * 0.5870f + fb * 0.1140f;
  const float scaled = y * 255.5f;
  return static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, scaled)));
}

int64_t parse_label(const std::string& text, int64_t classes) {
  if (text.empty()) return -1;
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (...) {
    return -1;
  }
  if (pos != text.size() || !std::isfinite(v) || v != std::floor(v) || v < 0 || v >= static_cast<double>(classes))
    return -1;
  return static_cast<int64_t>(v);
}

// ---- ListOps ---------------------------------------------------------------------------------

std::shared_ptr<Dataset> load_lra_listops(const std::string& dir, const std::string& split, LRALengths lengths) {
  check_split("listops", split);
  check_lengths("listops", lengths);
  std::string root = dir;
  if (!data::file_exists(data::join_path(root, "basic_" + split + ".tsv")) &&
      data::file_exists(data::join_path(data::join_path(dir, "listops-1000"), "basic_" + split + ".tsv")))
    root = data::join_path(dir, "listops-1000");
  const std::string path = data::join_path(root, "basic_" + split + ".tsv");
  const std::vector<uint8_t> bytes = data::read_file_bytes(path);
  auto ds = std::make_shared<ByteTokenDataset>("lra-listops/" + split, lengths.seq_len, 10, 0);
  bool header = false;
  std::vector<uint8_t> ids;
  for_each_line(bytes, [&](std::string_view line, int64_t number) {
    if (!header) {
      DIMIX_CHECK(line == "Source\tTarget", "listops: file '", path, "' line ", number,
                  ": expected the header 'Source<TAB>Target', got '", first_chars(line), "'");
      header = true;
      return;
    }
    const size_t tab = line.find('\t');
    DIMIX_CHECK(tab != std::string_view::npos && line.find('\t', tab + 1) == std::string_view::npos, "listops: file '",
                path, "' line ", number, ": expected 2 tab-separated columns (Source, Target), got ",
                tab == std::string_view::npos ? 1 : 3, "+: '", first_chars(line), "'");
    const std::string target(line.substr(tab + 1));
    const int64_t label = parse_label(target, 10);
    DIMIX_CHECK(label >= 0, "listops: file '", path, "' line ", number, ": target must be an integer 0..9, got '",
                first_chars(target), "'");
    const std::vector<int> tokens = lra::listops_tokenize(std::string(line.substr(0, tab)));
    DIMIX_CHECK(!tokens.empty(), "listops: file '", path, "' line ", number, ": empty expression");
    ids.assign(tokens.begin(), tokens.begin() + std::min<int64_t>(static_cast<int64_t>(tokens.size()), lengths.max_length));
    ds->add(ids.data(), ids.size(), label);
  });
  DIMIX_CHECK(header, "listops: file '", path, "' is empty; expected the header 'Source<TAB>Target'");
  return ds;
}

// ---- Text (IMDB, byte level) -------------------------------------------------------------------

std::shared_ptr<Dataset> load_lra_text(const std::string& dir, const std::string& split, LRALengths lengths) {
  check_split("text", split);
  check_lengths("text", lengths);
  std::string root = dir;
  if (fs::is_directory(fs::path(dir) / "aclImdb")) root = (fs::path(dir) / "aclImdb").string();
  const std::string part = split == "train" ? "train" : "test";  // LRA validates on the test set
  auto ds = std::make_shared<ByteTokenDataset>("lra-text/" + split, lengths.seq_len, 2, 1);
  for (const auto& [cls, label] : {std::pair<const char*, int64_t>{"neg", 0}, {"pos", 1}}) {
    const fs::path folder = fs::path(root) / part / cls;
    std::error_code ec;
    DIMIX_CHECK(fs::is_directory(folder, ec), "text: folder '", folder.string(),
                "' not found; expected the aclImdb layout <dir>/aclImdb/{train,test}/{neg,pos}/*.txt");
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(folder, ec))
      if (entry.path().extension() == ".txt") names.push_back(entry.path().filename().string());
    DIMIX_CHECK(!ec, "text: cannot list folder '", folder.string(), "': ", ec.message());
    DIMIX_CHECK(!names.empty(), "text: folder '", folder.string(), "' holds no .txt reviews");
    // <id>_<rating>.txt in id order (then by name).
    std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
      const int64_t ia = natural_id(a), ib = natural_id(b);
      return ia != ib ? ia < ib : a < b;
    });
    for (const auto& n : names) {
      const std::vector<uint8_t> bytes = data::read_file_bytes((folder / n).string());
      ds->add(bytes.data(), std::min<size_t>(bytes.size(), static_cast<size_t>(lengths.max_length)), label);
    }
  }
  return ds;
}

// ---- Retrieval (AAN pairs) -----------------------------------------------------------------------
namespace {

class RetrievalDataset final : public Dataset {
 public:
  RetrievalDataset(std::string path, std::string name, LRALengths lengths)
      : path_(std::move(path)), name_(std::move(name)), lengths_(lengths) {
    fd_ = ::open(path_.c_str(), O_RDONLY);
    if (fd_ < 0) DIMIX_FAIL("retrieval: cannot open file '", path_, "': ", std::strerror(errno));
    try {
      index();
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }
  ~RetrievalDataset() override { ::close(fd_); }

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  int64_t num_classes() const override { return 2; }
  std::string name() const override { return name_; }

  Example get(int64_t index) const override {
    DIMIX_CHECK(index >= 0 && index < size(), name_, ": index ", index, " out of range [0, ", size(), ")");
    const size_t i = static_cast<size_t>(index);
    std::string line(lines_[i].length, '\0');
    size_t done = 0;
    while (done < line.size()) {
      const ssize_t got = ::pread(fd_, line.data() + done, line.size() - done, lines_[i].offset + static_cast<off_t>(done));
      DIMIX_CHECK(got > 0, "retrieval: file '", path_, "' line ", lines_[i].number, ": read failed (file changed or ",
                  "truncated since it was indexed?)");
      done += static_cast<size_t>(got);
    }
    // label, id1, id2, text1, text2
    size_t cut[4];
    size_t at = 0;
    for (int k = 0; k < 4; ++k) {
      at = line.find('\t', at);
      DIMIX_CHECK(at != std::string::npos, "retrieval: file '", path_, "' line ", lines_[i].number,
                  ": changed since it was indexed");
      cut[k] = at++;
    }
    Example ex;
    ex.input = encode(std::string_view(line).substr(cut[2] + 1, cut[3] - cut[2] - 1));
    ex.input2 = encode(std::string_view(line).substr(cut[3] + 1));
    ex.label = labels_[i];
    return ex;
  }

 private:
  struct Line {
    int64_t offset;
    uint32_t length;
    int64_t number;
  };

  // First 10,000 bytes (LRA's s[:10000]), then max_length; byte + 1.
  Tensor encode(std::string_view text) const {
    Tensor t = zeros({lengths_.seq_len}, DType::i64);
    int64_t* out = t.data<int64_t>();
    const size_t n = std::min<size_t>({text.size(), size_t(10000), static_cast<size_t>(lengths_.max_length)});
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<int64_t>(static_cast<uint8_t>(text[i])) + 1;
    return t;
  }

  // One pass over the file: line offsets, 5 columns, the label.
  void index() {
    std::vector<char> buf(size_t(1) << 22);
    int64_t offset = 0, line_start = 0, number = 1;
    int tabs = 0;
    std::string label;
    bool label_done = false;
    auto finish = [&](int64_t end) {  // end: offset of '\n' or EOF
      int64_t stop = end;
      if (stop > line_start && last_char_ == '\r') --stop;
      const int64_t length = stop - line_start;
      if (length > 0) {
        DIMIX_CHECK(tabs == 4, "retrieval: file '", path_, "' line ", number,
                    ": expected 5 tab-separated columns (label, id1, id2, text1, text2), got ", tabs + 1);
        const int64_t l = parse_label(label, 2);
        DIMIX_CHECK(l >= 0, "retrieval: file '", path_, "' line ", number, ": label must be 0 or 1 (or 0.0 / 1.0), got '",
                    first_chars(label), "'");
        DIMIX_CHECK(length < (int64_t(1) << 32), "retrieval: file '", path_, "' line ", number, " is over 4 GiB");
        lines_.push_back({line_start, static_cast<uint32_t>(length), number});
        labels_.push_back(l);
      }
      ++number;
      tabs = 0;
      label.clear();
      label_done = false;
      line_start = end + 1;
      last_char_ = 0;
    };
    for (;;) {
      const ssize_t got = ::read(fd_, buf.data(), buf.size());
      DIMIX_CHECK(got >= 0, "retrieval: cannot read file '", path_, "': ", std::strerror(errno));
      if (got == 0) break;
      for (ssize_t i = 0; i < got; ++i) {
        const char c = buf[static_cast<size_t>(i)];
        if (c == '\n') {
          finish(offset + i);
          continue;
        }
        if (c == '\t') {
          ++tabs;
          label_done = true;
        } else if (!label_done && label.size() < 64) {
          label.push_back(c);
        }
        last_char_ = c;
      }
      offset += got;
    }
    if (offset > line_start) finish(offset);
    DIMIX_CHECK(!lines_.empty(), "retrieval: file '", path_, "' holds no examples");
    // A "\r" kept in the label column by a CRLF file without tabs cannot
    // happen (the column check comes first); strip it from labels anyway.
  }

  std::string path_, name_;
  LRALengths lengths_;
  int fd_ = -1;
  char last_char_ = 0;
  std::vector<Line> lines_;
  std::vector<int64_t> labels_;
};

}  // namespace

std::shared_ptr<Dataset> load_lra_retrieval(const std::string& dir, const std::string& split, LRALengths lengths) {
  check_split("retrieval", split);
  check_lengths("retrieval", lengths);
  const std::string file = "new_aan_pairs." + std::string(split == "val" ? "eval" : split) + ".tsv";
  std::string path = data::join_path(dir, file);
  if (!data::file_exists(path) && data::file_exists(data::join_path(data::join_path(dir, "tsv_data"), file)))
    path = data::join_path(data::join_path(dir, "tsv_data"), file);
  DIMIX_CHECK(data::file_exists(path), "retrieval: file '", path, "' not found; expected ", file, " in '", dir,
              "' (or its tsv_data/)");
  return std::make_shared<RetrievalDataset>(path, "lra-retrieval/" + split, lengths);
}

// ---- Image (CIFAR-10 grey) ------------------------------------------------------------------------

std::shared_ptr<Dataset> load_lra_image(const std::string& cifar_dir, const std::string& split) {
  check_split("image", split);
  const auto rgb = load_cifar10(cifar_dir, split == "test" ? "test" : "train");
  int64_t begin = 0, end = rgb->size();
  if (split != "test") {
    DIMIX_CHECK(rgb->size() > 5000, "image: the CIFAR-10 training files hold ", rgb->size(),
                " images; the 45k/5k train/val split needs more than 5000");
    if (split == "train") end = rgb->size() - 5000;
    else begin = rgb->size() - 5000;
  }
  auto ds = std::make_shared<ByteTokenDataset>("lra-image/" + split, 1024, 10, 1);
  ds->reserve(static_cast<size_t>(end - begin), static_cast<size_t>(end - begin) * 1024);
  const uint8_t* px = rgb->images().data<uint8_t>();
  std::vector<uint8_t> grey(1024);
  for (int64_t n = begin; n < end; ++n) {
    const uint8_t* r = px + n * 3072;
    for (int i = 0; i < 1024; ++i) grey[static_cast<size_t>(i)] = tf_rgb_to_gray(r[i], r[1024 + i], r[2048 + i]);
    ds->add(grey.data(), grey.size(), rgb->labels()[static_cast<size_t>(n)]);
  }
  return ds;
}

// ---- Pathfinder / Path-X --------------------------------------------------------------------------
namespace {

struct PathfinderEntry {
  std::string path;
  int64_t label;
  int32_t meta_file, meta_line;
};

// Rows of a real NPY array of strings ('<U' or '|S', C order, 2-D), as the
// upstream generator's np.save writes; the release's text form is the norm.
std::vector<std::vector<std::string>> parse_npy_strings(const std::vector<uint8_t>& bytes, const std::string& path) {
  auto fail = [&](const std::string& why) { DIMIX_FAIL("pathfinder: file '", path, "': NPY ", why); };
  if (bytes.size() < 10) fail("header truncated");
  const int major = bytes[6];
  size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = bytes[8] | (bytes[9] << 8);
    start = 10;
  } else {
    if (bytes.size() < 12) fail("header truncated");
    header_len = bytes[8] | (bytes[9] << 8) | (size_t(bytes[10]) << 16) | (size_t(bytes[11]) << 24);
    start = 12;
  }
  if (start + header_len > bytes.size()) fail("header truncated");
  const std::string header(bytes.begin() + static_cast<long>(start), bytes.begin() + static_cast<long>(start + header_len));
  const auto descr_at = header.find("'descr':");
  if (descr_at == std::string::npos) fail("header lacks 'descr'");
  const auto q1 = header.find('\'', descr_at + 8), q2 = header.find('\'', q1 + 1);
  const std::string descr = header.substr(q1 + 1, q2 - q1 - 1);
  if (header.find("'fortran_order': True") != std::string::npos) fail("in Fortran order is not supported");
  const bool unicode = descr.size() > 2 && descr[1] == 'U';
  if (!(descr.size() > 2 && (descr[1] == 'U' || descr[1] == 'S'))) fail("dtype '" + descr + "' is not a string type");
  const size_t chars = std::stoul(descr.substr(2));
  const auto shape_at = header.find("'shape':");
  const auto p1 = header.find('(', shape_at), p2 = header.find(')', p1);
  if (shape_at == std::string::npos || p1 == std::string::npos || p2 == std::string::npos) fail("header lacks 'shape'");
  std::vector<size_t> shape;
  std::stringstream ss(header.substr(p1 + 1, p2 - p1 - 1));
  for (std::string item; std::getline(ss, item, ',');)
    if (item.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoul(item));
  if (shape.size() != 2) fail("array must be 2-D (rows of fields)");
  const size_t item_bytes = chars * (unicode ? 4 : 1);
  const size_t data_at = start + header_len;
  if (data_at + shape[0] * shape[1] * item_bytes > bytes.size()) fail("data truncated");
  std::vector<std::vector<std::string>> rows(shape[0]);
  for (size_t r = 0; r < shape[0]; ++r)
    for (size_t c = 0; c < shape[1]; ++c) {
      const uint8_t* p = bytes.data() + data_at + (r * shape[1] + c) * item_bytes;
      std::string s;
      for (size_t k = 0; k < chars; ++k) {
        const uint32_t cp = unicode ? (p[4 * k] | (p[4 * k + 1] << 8) | (uint32_t(p[4 * k + 2]) << 16) |
                                       (uint32_t(p[4 * k + 3]) << 24))
                                    : p[k];
        if (cp == 0) break;
        if (cp > 127) fail("field holds a non-ASCII character");
        s.push_back(static_cast<char>(cp));
      }
      rows[r].push_back(std::move(s));
    }
  return rows;
}

class PathfinderDataset final : public Dataset {
 public:
  PathfinderDataset(std::string name, int resolution, std::vector<std::string> meta_files,
                    std::vector<PathfinderEntry> entries)
      : name_(std::move(name)), resolution_(resolution), meta_files_(std::move(meta_files)), entries_(std::move(entries)) {}

  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  int64_t num_classes() const override { return 2; }
  std::string name() const override { return name_; }

  Example get(int64_t index) const override {
    DIMIX_CHECK(index >= 0 && index < size(), name_, ": index ", index, " out of range [0, ", size(), ")");
    const PathfinderEntry& e = entries_[static_cast<size_t>(index)];
    const std::string where = " (" + name_ + " example " + std::to_string(index) + ", metadata '" +
                              meta_files_[static_cast<size_t>(e.meta_file)] + "' line " + std::to_string(e.meta_line) +
                              ")";
    data::GrayImage img;
    try {
      img = data::read_png_gray(e.path);
    } catch (const Error& err) {
      DIMIX_FAIL(err.what(), where);
    }
    DIMIX_CHECK(img.width == resolution_ && img.height == resolution_, "pathfinder: image '", e.path, "' is ", img.width,
                "x", img.height, " but this task expects ", resolution_, "x", resolution_, where);
    Example ex;
    ex.input = empty({static_cast<int64_t>(resolution_) * resolution_}, DType::i64);
    int64_t* out = ex.input.data<int64_t>();
    for (size_t i = 0; i < img.pixels.size(); ++i) out[i] = static_cast<int64_t>(img.pixels[i]) + 1;
    ex.label = e.label;
    return ex;
  }

 private:
  std::string name_;
  int resolution_;
  std::vector<std::string> meta_files_;
  std::vector<PathfinderEntry> entries_;
};

}  // namespace

std::shared_ptr<Dataset> load_lra_pathfinder(const std::string& dir, const std::string& split, int resolution) {
  check_split("pathfinder", split);
  DIMIX_CHECK(resolution > 0, "pathfinder: resolution must be positive, got ", resolution);
  const fs::path meta_dir = fs::path(dir) / "metadata";
  std::error_code ec;
  DIMIX_CHECK(fs::is_directory(meta_dir, ec), "pathfinder: folder '", meta_dir.string(),
              "' not found; expected <dir>/metadata/<k>.npy and <dir>/imgs/<k>/sample_<i>.png");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(meta_dir, ec))
    if (entry.path().extension() == ".npy") files.push_back(entry.path());
  DIMIX_CHECK(!ec, "pathfinder: cannot list folder '", meta_dir.string(), "': ", ec.message());
  DIMIX_CHECK(!files.empty(), "pathfinder: folder '", meta_dir.string(), "' holds no metadata/*.npy files");
  // Numeric order of the stems (S4: key=int(path.stem)); other names after, by name.
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    const std::string sa = a.stem().string(), sb = b.stem().string();
    const bool na = !sa.empty() && sa.size() < 16 && sa.find_first_not_of("0123456789") == std::string::npos;
    const bool nb = !sb.empty() && sb.size() < 16 && sb.find_first_not_of("0123456789") == std::string::npos;
    if (na != nb) return na;
    if (na) return std::stoll(sa) < std::stoll(sb);
    return sa < sb;
  });

  std::vector<std::string> meta_names;
  std::vector<PathfinderEntry> entries;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string meta_path = files[f].string();
    meta_names.push_back(meta_path);
    const std::vector<uint8_t> bytes = data::read_file_bytes(meta_path);
    std::vector<std::pair<std::vector<std::string>, int64_t>> rows;  // fields, line number
    static const char kNpyMagic[] = "\x93NUMPY";
    if (bytes.size() >= 6 && std::memcmp(bytes.data(), kNpyMagic, 6) == 0) {
      int64_t r = 1;
      for (auto& fields : parse_npy_strings(bytes, meta_path)) rows.emplace_back(std::move(fields), r++);
    } else {
      for_each_line(bytes, [&](std::string_view line, int64_t number) {
        std::vector<std::string> fields;
        std::string cur;
        for (char c : line) {
          if (c == ' ' || c == '\t') {
            if (!cur.empty()) fields.push_back(std::move(cur));
            cur.clear();
          } else {
            cur.push_back(c);
          }
        }
        if (!cur.empty()) fields.push_back(std::move(cur));
        if (!fields.empty()) rows.emplace_back(std::move(fields), number);
      });
    }
    for (const auto& [fields, number] : rows) {
      DIMIX_CHECK(fields.size() >= 4, "pathfinder: file '", meta_path, "' line ", number,
                  ": expected at least 4 space-separated fields (subpath, file, index, label, ...), got ", fields.size());
      const int64_t label = parse_label(fields[3], 2);
      DIMIX_CHECK(label >= 0, "pathfinder: file '", meta_path, "' line ", number, ": label (field 4) must be 0 or 1, got '",
                  first_chars(fields[3]), "'");
      const std::string png = (fs::path(dir) / fields[0] / fields[1]).string();
      struct stat st;
      DIMIX_CHECK(::stat(png.c_str(), &st) == 0, "pathfinder: image '", png, "' listed in '", meta_path, "' line ",
                  number, " is missing: ", std::strerror(errno));
      if (st.st_size == 0) continue;  // LRA filters empty PNGs
      entries.push_back({png, label, static_cast<int32_t>(f), static_cast<int32_t>(number)});
    }
  }
  const int64_t n = static_cast<int64_t>(entries.size());
  DIMIX_CHECK(n > 0, "pathfinder: no usable images listed under '", meta_dir.string(), "'");
  const int64_t cut1 = n * 8 / 10, cut2 = n * 9 / 10;
  const int64_t begin = split == "train" ? 0 : split == "val" ? cut1 : cut2;
  const int64_t end = split == "train" ? cut1 : split == "val" ? cut2 : n;
  std::vector<PathfinderEntry> part(entries.begin() + begin, entries.begin() + end);
  return std::make_shared<PathfinderDataset>("lra-pathfinder" + std::to_string(resolution) + "/" + split, resolution,
                                             std::move(meta_names), std::move(part));
}

// ---- by task name --------------------------------------------------------------------------------

std::vector<std::string> lra_task_names() {
  return {"listops", "text", "retrieval", "image", "pathfinder32", "pathfinder64", "pathfinder128", "pathfinder256"};
}

LRATaskInfo lra_task_info(const std::string& task) {
  LRATaskInfo t;
  t.name = task == "pathx" ? "pathfinder128" : task;
  if (t.name == "listops") {
    t.lengths = {2000, 2048};
    t.classes = 10;
    t.vocab = lra::kListOpsVocab;
  } else if (t.name == "text") {
    t.lengths = {4000, 4096};
  } else if (t.name == "retrieval") {
    t.lengths = {4000, 4096};
    t.dual = true;
  } else if (t.name == "image") {
    t.lengths = {1024, 1024};
    t.classes = 10;
  } else if (t.name.rfind("pathfinder", 0) == 0 &&
             (t.name == "pathfinder32" || t.name == "pathfinder64" || t.name == "pathfinder128" ||
              t.name == "pathfinder256")) {
    t.resolution = std::stoi(t.name.substr(10));
    t.lengths = {int64_t(t.resolution) * t.resolution, int64_t(t.resolution) * t.resolution};
  } else {
    std::string known;
    for (const auto& n : lra_task_names()) known += (known.empty() ? "" : ", ") + n;
    DIMIX_FAIL("lra: unknown task '", task, "'; known tasks: ", known, " (pathx = pathfinder128)");
  }
  return t;
}

std::shared_ptr<Dataset> make_lra_dataset(const std::string& task, const std::string& dir, const std::string& split,
                                          LRALengths lengths) {
  const LRATaskInfo t = lra_task_info(task);
  LRALengths l = t.lengths;
  if (lengths.max_length > 0) l.max_length = lengths.max_length;
  if (lengths.seq_len > 0) l.seq_len = lengths.seq_len;
  if (t.name == "listops") return load_lra_listops(dir, split, l);
  if (t.name == "text") return load_lra_text(dir, split, l);
  if (t.name == "retrieval") return load_lra_retrieval(dir, split, l);
  DIMIX_CHECK(l.seq_len == t.lengths.seq_len && l.max_length == t.lengths.max_length, "lra: task ", t.name,
              " has a fixed sequence length of ", t.lengths.seq_len, " (its pixels); got max_length ", l.max_length,
              ", seq_len ", l.seq_len);
  if (t.name == "image") return load_lra_image(dir, split);
  return load_lra_pathfinder(dir, split, t.resolution);
}

}  // namespace dimix
