// The ListOps generator, printer, evaluator and vocabulary (see lra_listops.h).
#include "data/lra_listops.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>
#include <string_view>
#include <unordered_set>

#include "core/error.h"
#include "core/rng.h"
#include "data/png.h"

namespace dimix::lra {

namespace {

constexpr double kValueP = 0.25;
const char* const kOpNames[4] = {"[MIN", "[MAX", "[MED", "[SM"};

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

// Runs fn(t) for t in [0, n) on n threads (inline when n == 1); the first
// exception is rethrown on the caller's thread.
template <class F>
void run_on_threads(int n, F&& fn) {
  if (n <= 1) {
    fn(0);
    return;
  }
  std::exception_ptr error;
  std::mutex mu;
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) {
    pool.emplace_back([&, t] {
      try {
        fn(t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

// One attempt's recursive draw, in the order of the Python generate_tree:
// random() (above max_depth only), then either choice(VALUES) or
// randint(2, max_args), the children, and choice(OPERATORS).
struct TreeSampler {
  Generator gen;
  int max_depth, max_args;
  size_t max_length;
  std::string out;
  bool too_long = false;

  void push(uint8_t code) {
    out.push_back(static_cast<char>(code));
    if (out.size() >= max_length) too_long = true;  // the length only grows from here
  }
  void node(int depth) {
    const double r = depth < max_depth ? gen.uniform() : 1.0;
    if (r > kValueP) {
      push(static_cast<uint8_t>(gen.randint(10)));
      return;
    }
    const int args = 2 + static_cast<int>(gen.randint(static_cast<uint64_t>(max_args - 1)));
    const size_t op_at = out.size();
    push(kListOpsMin);  // placeholder: the operator is drawn after the arguments
    for (int a = 0; a < args && !too_long; ++a) node(depth + 1);
    if (too_long) return;
    out[op_at] = static_cast<char>(kListOpsMin + gen.randint(4));
    push(kListOpsEnd);
  }
};

// Parses the compact tree at `pos`; returns the node's value and advances pos.
int evaluate_at(const std::string& c, size_t& pos) {
  DIMIX_CHECK(pos < c.size(), "listops_evaluate: expression ends early at token ", pos);
  const uint8_t t = static_cast<uint8_t>(c[pos++]);
  if (t < 10) return t;
  DIMIX_CHECK(t >= kListOpsMin && t <= kListOpsSum, "listops_evaluate: unexpected code ", int(t), " at token ", pos - 1);
  std::vector<int> values;
  while (true) {
    DIMIX_CHECK(pos < c.size(), "listops_evaluate: operator without ']' (expression ends at token ", pos, ")");
    if (static_cast<uint8_t>(c[pos]) == kListOpsEnd) {
      ++pos;
      break;
    }
    values.push_back(evaluate_at(c, pos));
  }
  DIMIX_CHECK(!values.empty(), "listops_evaluate: operator with no arguments before token ", pos);
  switch (t) {
    case kListOpsMin: return *std::min_element(values.begin(), values.end());
    case kListOpsMax: return *std::max_element(values.begin(), values.end());
    case kListOpsMed: {
      std::sort(values.begin(), values.end());
      const size_t n = values.size();
      // int(np.median): the middle value, or the mean of the middle two truncated.
      return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    }
    default: {
      int s = 0;
      for (int v : values) s += v;
      return s % 10;
    }
  }
}

void print_at(const std::string& c, size_t& pos, const std::vector<int>& arity, std::string& s) {
  const uint8_t t = static_cast<uint8_t>(c[pos]);
  if (t < 10) {
    s.push_back(static_cast<char>('0' + t));
    ++pos;
    return;
  }
  const int k = arity[pos];
  for (int i = 0; i <= k; ++i) s += "( ";
  s += kOpNames[t - kListOpsMin];
  ++pos;
  for (int i = 0; i < k; ++i) {
    s.push_back(' ');
    print_at(c, pos, arity, s);
    s += " )";
  }
  ++pos;  // ']'
  s += " ] )";
}

}  // namespace

std::string listops_sample(uint64_t seed, uint64_t attempt, const ListOpsOptions& o) {
  DIMIX_CHECK(o.max_args >= 2 && o.max_depth >= 1 && o.max_length > 0 && o.min_length >= 0,
              "listops: bad options (max_args ", o.max_args, ", max_depth ", o.max_depth, ", lengths (", o.min_length,
              ", ", o.max_length, "))");
  TreeSampler s{Generator(seed), o.max_depth, o.max_args, static_cast<size_t>(o.max_length), {}, false};
  s.gen.set_state(seed, attempt << 32);
  s.node(1);
  if (s.too_long || static_cast<int64_t>(s.out.size()) <= o.min_length) return {};
  return std::move(s.out);
}

int listops_evaluate(const std::string& compact) {
  size_t pos = 0;
  const int v = evaluate_at(compact, pos);
  DIMIX_CHECK(pos == compact.size(), "listops_evaluate: trailing tokens after position ", pos, " of ", compact.size());
  return v;
}

std::string listops_to_string(const std::string& compact) {
  listops_evaluate(compact);  // validates the structure
  std::vector<int> arity(compact.size(), 0);
  std::vector<size_t> open;
  for (size_t i = 0; i < compact.size(); ++i) {
    const uint8_t t = static_cast<uint8_t>(compact[i]);
    if (t == kListOpsEnd) {
      open.pop_back();
      continue;
    }
    if (!open.empty()) ++arity[open.back()];
    if (t >= kListOpsMin) open.push_back(i);
  }
  std::string s;
  s.reserve(compact.size() * 4);
  size_t pos = 0;
  print_at(compact, pos, arity, s);
  return s;
}

ListOpsSplits generate_listops(const ListOpsOptions& o, const ListOpsProgress& progress) {
  DIMIX_CHECK(o.train >= 0 && o.val >= 0 && o.test >= 0 && o.train + o.val + o.test > 0,
              "listops: split sizes must be non-negative with a positive total, got ", o.train, "/", o.val, "/", o.test);
  const int64_t total = o.train + o.val + o.test;
  const int threads = resolve_threads(o.threads);
  std::vector<std::string> unique;
  unique.reserve(static_cast<size_t>(total));
  // Views into `unique`, whose strings never move (capacity reserved above).
  std::unordered_set<std::string_view> seen;
  seen.reserve(static_cast<size_t>(total) * 2);

  // Rounds of attempts, sampled in parallel, merged in attempt order.
  const uint64_t per_round = 2048 * static_cast<uint64_t>(threads);
  uint64_t next_attempt = 0;
  int64_t last_report = -1;
  while (static_cast<int64_t>(unique.size()) < total) {
    DIMIX_CHECK(next_attempt < (uint64_t(1) << 31), "listops: gave up after ", next_attempt, " attempts with only ",
                unique.size(), " of ", total, " trees in the length window (", o.min_length, ", ", o.max_length, ")");
    std::vector<std::string> round(per_round);
    run_on_threads(threads, [&](int t) {
      for (uint64_t i = static_cast<uint64_t>(t); i < per_round; i += static_cast<uint64_t>(threads))
        round[i] = listops_sample(o.seed, next_attempt + i, o);
    });
    next_attempt += per_round;
    for (auto& tree : round) {
      if (tree.empty() || static_cast<int64_t>(unique.size()) >= total) continue;
      if (seen.count(tree)) continue;
      unique.push_back(std::move(tree));
      seen.insert(std::string_view(unique.back()));
    }
    const int64_t done = static_cast<int64_t>(unique.size());
    if (progress && done / 1000 != last_report) {
      last_report = done / 1000;
      progress(done, total);
    }
  }
  seen.clear();

  // Fisher-Yates with its own Philox stream, standing in for set order.
  Generator shuffle(o.seed);
  shuffle.set_state(o.seed, uint64_t(1) << 63);
  for (size_t i = unique.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(shuffle.randint(i));
    std::swap(unique[i - 1], unique[j]);
  }
  ListOpsSplits s;
  auto take = [&](std::vector<std::string>& dst, int64_t begin, int64_t n) {
    dst.assign(std::make_move_iterator(unique.begin() + begin), std::make_move_iterator(unique.begin() + begin + n));
  };
  take(s.train, 0, o.train);
  take(s.val, o.train, o.val);
  take(s.test, o.train + o.val, o.test);
  return s;
}

void write_listops_tsv(const std::string& path, const std::vector<std::string>& examples, int threads) {
  const int nt = resolve_threads(threads);
  // Format in parallel chunks, write in order.
  const size_t chunks = std::max<size_t>(1, std::min<size_t>(examples.size(), static_cast<size_t>(nt) * 8));
  std::vector<std::string> text(chunks);
  std::atomic<size_t> next{0};
  run_on_threads(std::min<int>(nt, static_cast<int>(chunks)), [&](int) {
    for (size_t c; (c = next.fetch_add(1)) < chunks;) {
      const size_t b = examples.size() * c / chunks, e = examples.size() * (c + 1) / chunks;
      std::string& out = text[c];
      for (size_t i = b; i < e; ++i) {
        out += listops_to_string(examples[i]);
        out.push_back('\t');
        out += std::to_string(listops_evaluate(examples[i]));
        out += "\r\n";
      }
    }
  });
  std::FILE* f = std::fopen(path.c_str(), "wb");
  DIMIX_CHECK(f != nullptr, "listops: cannot write file '", path, "'");
  static const char header[] = "Source\tTarget\r\n";
  bool ok = std::fwrite(header, 1, sizeof(header) - 1, f) == sizeof(header) - 1;
  for (const auto& t : text) ok = ok && std::fwrite(t.data(), 1, t.size(), f) == t.size();
  ok = (std::fclose(f) == 0) && ok;
  DIMIX_CHECK(ok, "listops: error while writing file '", path, "'");
}

std::vector<std::string> generate_listops_files(const std::string& dir, const ListOpsOptions& o,
                                                const ListOpsProgress& progress) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  DIMIX_CHECK(!ec, "listops: cannot create directory '", dir, "': ", ec.message());
  const ListOpsSplits s = generate_listops(o, progress);
  std::vector<std::string> paths;
  for (const auto& [name, examples] : {std::pair<const char*, const std::vector<std::string>*>{"basic_train.tsv", &s.train},
                                       {"basic_val.tsv", &s.val},
                                       {"basic_test.tsv", &s.test}}) {
    paths.push_back((std::filesystem::path(dir) / name).string());
    write_listops_tsv(paths.back(), *examples, o.threads);
  }
  return paths;
}

// ---- vocabulary -------------------------------------------------------------------

const std::vector<std::string>& listops_vocabulary() {
  static const std::vector<std::string> v = {"[MIN", "[MAX", "[MED", "[SM", "X", "0", "1", "2",
                                             "3",    "4",    "5",    "6",   "7", "8", "9"};
  return v;
}

int listops_token_id(const std::string& token) {
  if (token.size() == 1) {
    const char c = token[0];
    if (c >= '0' && c <= '9') return 6 + (c - '0');
    if (c == 'X') return 5;
    return kListOpsUnknown;
  }
  if (token == "[MIN") return 1;
  if (token == "[MAX") return 2;
  if (token == "[MED") return 3;
  if (token == "[SM") return 4;
  return kListOpsUnknown;
}

std::vector<int> listops_tokenize(const std::string& source) {
  std::vector<int> ids;
  std::string token;
  auto flush = [&] {
    if (!token.empty()) ids.push_back(listops_token_id(token));
    token.clear();
  };
  for (char c : source) {
    if (c == '(' || c == ')') continue;  // removed, not separators (as regex_replace with '')
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      flush();
      continue;
    }
    token.push_back(c == ']' ? 'X' : c);
  }
  flush();
  return ids;
}

}  // namespace dimix::lra
