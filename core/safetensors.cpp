// safetensors I/O (see safetensors.h), with the small JSON writer and parser
// the header needs. The parser accepts any JSON (any key order, whitespace,
// escapes, nested values it does not need) and reports the byte offset within
// the header of the first thing it cannot read.
#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>

namespace dimix {

// Tensor bytes go to disk exactly as they sit in memory.
static_assert(std::endian::native == std::endian::little,
              "safetensors.cpp writes memory as-is and assumes a little-endian host");

namespace {

// ---- JSON ---------------------------------------------------------------------

struct Json {
  enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
  std::string text;  // a string's decoded value, or a number's literal
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;
  size_t pos = 0;  // byte offset in the header where the value starts

  const Json* find(const std::string& key) const {
    for (const auto& [k, v] : members)
      if (k == key) return &v;
    return nullptr;
  }
};

class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& where) : s_(text), where_(where) {}

  Json parse_document() {
    skip_ws();
    Json v = parse_value(0);
    skip_ws();
    if (i_ != s_.size()) fail("unexpected '", s_[i_], "' after the end of the header object");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;  // a safetensors header is 3 deep

  template <class... A>
  [[noreturn]] void fail(const A&... a) const {
    DIMIX_FAIL(where_, ": bad JSON in header at byte ", i_, " (file offset ", i_ + 8, "): ", a...);
  }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (i_ >= s_.size()) fail("expected '", c, "', got the end of the header");
    if (s_[i_] != c) fail("expected '", c, "', got '", s_[i_], "'");
    ++i_;
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than ", kMaxDepth);
    if (i_ >= s_.size()) fail("expected a value, got the end of the header");
    Json v;
    v.pos = i_;
    const char c = s_[i_];
    if (c == '{') {
      v.kind = Json::Kind::object;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
      for (;;) {
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string key");
        const size_t key_pos = i_;
        std::string key = parse_string();
        for (const auto& [k, unused] : v.members)
          if (k == key) { i_ = key_pos; fail("duplicate key \"", key, "\""); }
        skip_ws();
        expect(':');
        skip_ws();
        v.members.emplace_back(std::move(key), parse_value(depth + 1));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = Json::Kind::array;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
      for (;;) {
        skip_ws();
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = Json::Kind::string;
      v.text = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Kind::number;
      v.text = parse_number();
      return v;
    }
    if (literal("true") || literal("false")) {
      v.kind = Json::Kind::boolean;
      v.text = s_.substr(v.pos, i_ - v.pos);
      return v;
    }
    if (literal("null")) return v;
    fail("unexpected character '", c, "'");
  }

  bool literal(const char* word) {
    const size_t n = std::strlen(word);
    if (s_.compare(i_, n, word) != 0) return false;
    i_ += n;
    return true;
  }

  std::string parse_number() {
    const size_t start = i_;
    auto digits = [&] {
      const size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == d) fail("malformed number");
    };
    if (s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') ++i_;  // no leading zeros in JSON
    else digits();
    if (i_ < s_.size() && s_[i_] == '.') { ++i_; digits(); }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      digits();
    }
    return s_.substr(start, i_ - start);
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_++];
      u <<= 4;
      if (h >= '0' && h <= '9') u |= h - '0';
      else if (h >= 'a' && h <= 'f') u |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') u |= h - 'A' + 10;
      else { --i_; fail("bad hex digit '", h, "' in \\u escape"); }
    }
    return u;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_];
      if (c == '"') { ++i_; return out; }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') { out += c; ++i_; continue; }
      ++i_;
      if (i_ >= s_.size()) fail("unterminated string");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a UTF-16 surrogate pair
            if (!(i_ + 1 < s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u')) fail("unpaired surrogate");
            i_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("unpaired surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default: --i_; fail("bad escape '\\", e, "'");
      }
    }
  }

  const std::string& s_;
  std::string where_;
  size_t i_ = 0;
};

void json_escape(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

// ---- file helpers -------------------------------------------------------------

std::string errno_str() { return std::strerror(errno); }

struct Fd {
  int fd = -1;
  ~Fd() { if (fd >= 0) ::close(fd); }
};

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      DIMIX_FAIL("save_safetensors: ", path, ": write failed: ", errno_str());
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void read_all(int fd, void* data, size_t n, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, std::min<size_t>(n, size_t{1} << 30), static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      DIMIX_FAIL("load_safetensors: ", path, ": read failed at byte ", offset, ": ", errno_str());
    }
    DIMIX_CHECK(r > 0, "load_safetensors: ", path, ": file ended early at byte ", offset);
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

DType dtype_from_tag(const std::string& tag, const std::string& where) {
  if (tag == "F32") return DType::f32;
  if (tag == "F64") return DType::f64;
  if (tag == "I32") return DType::i32;
  if (tag == "I64") return DType::i64;
  if (tag == "U8") return DType::u8;
  DIMIX_FAIL(where, ": unknown dtype \"", tag, "\" (supported: F32, F64, I32, I64, U8)");
}

// A non-negative JSON integer that fits int64 (shapes and offsets).
int64_t json_uint(const Json& v, const std::string& where) {
  bool ok = v.kind == Json::Kind::number && !v.text.empty() && v.text[0] != '-' &&
            v.text.find_first_of(".eE") == std::string::npos;
  int64_t out = 0;
  if (ok) {
    for (const char c : v.text) {
      const int d = c - '0';
      if (out > (std::numeric_limits<int64_t>::max() - d) / 10) { ok = false; break; }
      out = out * 10 + d;
    }
  }
  DIMIX_CHECK(ok, where, ": expected a non-negative integer, got ",
              v.kind == Json::Kind::number ? v.text : std::string("a non-number"));
  return out;
}

}  // namespace

const char* safetensors_dtype_tag(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  DIMIX_FAIL("safetensors: dtype ", static_cast<int>(dtype), " has no safetensors tag");
}

bool SafetensorsContents::contains(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return true;
  return false;
}

const Tensor& SafetensorsContents::at(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  DIMIX_FAIL("safetensors: ", path.empty() ? std::string("file") : path, " has no tensor named '", name, "'");
}

// ---- save ---------------------------------------------------------------------

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Contiguous CPU copies first, so every check fails before the file is touched.
  NamedTensors host;
  host.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    DIMIX_CHECK(t.defined(), "save_safetensors: ", path, ": tensor '", name, "' is undefined");
    DIMIX_CHECK(name != "__metadata__", "save_safetensors: ", path,
                ": '__metadata__' is reserved and cannot name a tensor");
    for (const auto& [other, unused] : host)
      DIMIX_CHECK(other != name, "save_safetensors: ", path, ": tensor name '", name, "' appears twice");
    Tensor c = t.contiguous_raw();  // on its own device (a strided GPU copy stays on the GPU)
    if (!c.device().is_cpu()) c = to_device_raw(c, Device::cpu());
    host.emplace_back(name, c);
  }

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ',';
      first = false;
      json_escape(header, k);
      header += ':';
      json_escape(header, v);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < host.size(); ++i) {
    const auto& [name, t] = host[i];
    if (i > 0 || !metadata.empty()) header += ',';
    json_escape(header, name);
    header += ":{\"dtype\":\"";
    header += safetensors_dtype_tag(t.dtype());
    header += "\",\"shape\":[";
    for (int64_t d = 0; d < t.dim(); ++d) {
      if (d) header += ',';
      header += std::to_string(t.size(d));
    }
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  {
    Fd f;
    f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    DIMIX_CHECK(f.fd >= 0, "save_safetensors: cannot create ", tmp, ": ", errno_str());
    try {
      uint8_t len[8];
      const uint64_t n = header.size();
      for (int k = 0; k < 8; ++k) len[k] = static_cast<uint8_t>(n >> (8 * k));
      write_all(f.fd, len, 8, tmp);
      write_all(f.fd, header.data(), header.size(), tmp);
      for (const auto& [name, t] : host)
        if (t.numel() > 0) write_all(f.fd, t.raw_data(), t.numel() * dtype_size(t.dtype()), tmp);
      DIMIX_CHECK(::fsync(f.fd) == 0, "save_safetensors: fsync of ", tmp, " failed: ", errno_str());
      const int fd = f.fd;
      f.fd = -1;
      DIMIX_CHECK(::close(fd) == 0, "save_safetensors: close of ", tmp, " failed: ", errno_str());
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_str();
    ::unlink(tmp.c_str());
    DIMIX_FAIL("save_safetensors: cannot rename ", tmp, " to ", path, ": ", why);
  }
  // Make the rename itself durable. Some file systems refuse to fsync a
  // directory; the data are already safe then, so that is not an error.
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  Fd d;
  d.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d.fd >= 0) (void)::fsync(d.fd);
}

// ---- load ---------------------------------------------------------------------

SafetensorsContents load_safetensors(const std::string& path) {
  const std::string where = "load_safetensors: " + path;
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  DIMIX_CHECK(f.fd >= 0, where, ": cannot open: ", errno_str());
  struct stat st;
  DIMIX_CHECK(::fstat(f.fd, &st) == 0, where, ": cannot stat: ", errno_str());
  DIMIX_CHECK(S_ISREG(st.st_mode), where, ": not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  DIMIX_CHECK(file_size >= 8, where, ": truncated header: the file has ", file_size,
              " bytes, fewer than the 8-byte header length");

  uint8_t len[8];
  read_all(f.fd, len, 8, 0, path);
  uint64_t n = 0;
  for (int k = 0; k < 8; ++k) n |= static_cast<uint64_t>(len[k]) << (8 * k);
  DIMIX_CHECK(n <= file_size - 8, where, ": header length ", n, " goes beyond the end of the file (",
              file_size, " bytes)");
  std::string header(n, '\0');
  read_all(f.fd, header.data(), n, 8, path);
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = file_size - data_start;

  const Json root = JsonParser(header, where).parse_document();
  DIMIX_CHECK(root.kind == Json::Kind::object, where, ": the header is not a JSON object");

  SafetensorsContents out;
  out.path = path;
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    int64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [name, v] : root.members) {
    if (name == "__metadata__") {
      DIMIX_CHECK(v.kind == Json::Kind::object, where, ": \"__metadata__\" is not an object");
      for (const auto& [k, mv] : v.members) {
        DIMIX_CHECK(mv.kind == Json::Kind::string, where, ": metadata value of \"", k,
                    "\" is not a string (at header byte ", mv.pos, ")");
        out.metadata[k] = mv.text;
      }
      continue;
    }
    const std::string tw = where + ": tensor '" + name + "'";
    DIMIX_CHECK(v.kind == Json::Kind::object, tw, ": expected an object (at header byte ", v.pos, ")");
    const Json* dtype = v.find("dtype");
    const Json* shape = v.find("shape");
    const Json* offsets = v.find("data_offsets");
    DIMIX_CHECK(dtype && dtype->kind == Json::Kind::string, tw, ": missing or non-string \"dtype\"");
    DIMIX_CHECK(shape && shape->kind == Json::Kind::array, tw, ": missing or non-array \"shape\"");
    DIMIX_CHECK(offsets && offsets->kind == Json::Kind::array && offsets->items.size() == 2, tw,
                ": \"data_offsets\" must be an array [begin, end]");
    Entry e;
    e.name = name;
    e.dtype = dtype_from_tag(dtype->text, tw);
    int64_t numel = 1;
    bool overflow = false;
    for (const Json& d : shape->items) {
      const int64_t s = json_uint(d, tw + " shape");
      e.shape.push_back(s);
      if (s != 0 && numel > std::numeric_limits<int64_t>::max() / 16 / s) overflow = true;
      if (!overflow) numel *= s;
    }
    DIMIX_CHECK(!overflow, tw, ": shape ", shape_str(e.shape), " is too large");
    e.begin = json_uint(offsets->items[0], tw + " data_offsets");
    e.end = json_uint(offsets->items[1], tw + " data_offsets");
    DIMIX_CHECK(e.begin <= e.end && static_cast<uint64_t>(e.end) <= data_size, tw, ": data_offsets [", e.begin,
                ", ", e.end, "] fall outside the data section of ", data_size, " bytes");
    const int64_t expected = numel * static_cast<int64_t>(dtype_size(e.dtype));
    DIMIX_CHECK(e.end - e.begin == expected, tw, ": data_offsets [", e.begin, ", ", e.end, "] span ",
                e.end - e.begin, " bytes but shape ", shape_str(e.shape), " of ", dtype->text, " needs ", expected);
    entries.push_back(std::move(e));
  }
  // File order is data order; a stable sort keeps header order for ties (empty tensors).
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    if (e.end > e.begin)
      read_all(f.fd, t.raw_data(), static_cast<size_t>(e.end - e.begin), data_start + e.begin, path);
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

}  // namespace dimix
