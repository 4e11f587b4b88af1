// ListOps (DATA.md section 2): the generator's printing and values against
// hand-worked trees and against an independent evaluator that parses the
// printed left-nested tuples and evaluates them the way the Python to_value
// does; the files' exact format (header, CRLF, 2 columns, lengths in the
// window, no duplicates); same seed -> identical bytes for any thread count;
// and the loader's ids on hand-written and generated files, with its errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "data/io.h"
#include "data/lra_datasets.h"
#include "data/lra_listops.h"
#include "tests/data/data_test_util.h"

using Catch::Matchers::Contains;
using namespace dimix;
using dimix::test::TempDir;

namespace {

// Compact code from a readable prefix string: "[SM 2 9 [MED 4 7 ] ]".
std::string compact(const std::string& prefix) {
  std::istringstream is(prefix);
  std::string t, out;
  while (is >> t) {
    if (t == "[MIN") out.push_back(char(lra::kListOpsMin));
    else if (t == "[MAX") out.push_back(char(lra::kListOpsMax));
    else if (t == "[MED") out.push_back(char(lra::kListOpsMed));
    else if (t == "[SM") out.push_back(char(lra::kListOpsSum));
    else if (t == "]") out.push_back(char(lra::kListOpsEnd));
    else out.push_back(char(std::stoi(t)));
  }
  return out;
}

// ---- an independent evaluator of the printed form --------------------------------------
// Parses "( a b )" pairs into a binary tree of strings, then evaluates it
// as listops.py's to_value: (op, x) makes an unsaturated function, (f, x)
// appends an argument, (f, ']') applies it.
struct Item {
  std::string atom;                  // "[MAX", "7", "]" when a leaf
  std::unique_ptr<Item> left, right; // a pair otherwise
};

std::unique_ptr<Item> parse_item(const std::vector<std::string>& tok, size_t& i) {
  REQUIRE(i < tok.size());
  auto it = std::make_unique<Item>();
  if (tok[i] == "(") {
    ++i;
    it->left = parse_item(tok, i);
    it->right = parse_item(tok, i);
    REQUIRE(i < tok.size());
    REQUIRE(tok[i] == ")");
    ++i;
  } else {
    REQUIRE(tok[i] != ")");
    it->atom = tok[i++];
  }
  return it;
}

struct Value {
  bool is_int = false;
  int v = 0;
  std::string op;         // an operator atom or an unsaturated function's op
  std::vector<int> args;  // of an unsaturated function
  bool is_end = false, is_function = false;
};

Value to_value(const Item& t) {
  Value r;
  if (!t.left) {
    if (t.atom == "]") r.is_end = true;
    else if (t.atom[0] == '[') r.op = t.atom;
    else { r.is_int = true; r.v = std::stoi(t.atom); }
    return r;
  }
  const Value l = to_value(*t.left), rr = to_value(*t.right);
  if (!l.op.empty() && !l.is_function) {  // (op, x)
    REQUIRE(rr.is_int);
    r.is_function = true;
    r.op = l.op;
    r.args = {rr.v};
    return r;
  }
  REQUIRE(l.is_function);
  if (rr.is_end) {
    std::vector<int> a = l.args;
    r.is_int = true;
    if (l.op == "[MIN") r.v = *std::min_element(a.begin(), a.end());
    else if (l.op == "[MAX") r.v = *std::max_element(a.begin(), a.end());
    else if (l.op == "[SM") { int s = 0; for (int x : a) s += x; r.v = s % 10; }
    else {
      REQUIRE(l.op == "[MED");
      std::sort(a.begin(), a.end());
      const double med = a.size() % 2 ? a[a.size() / 2] : (a[a.size() / 2 - 1] + a[a.size() / 2]) / 2.0;
      r.v = static_cast<int>(med);  // int(np.median(...))
    }
    return r;
  }
  REQUIRE(rr.is_int);
  r = l;
  r.args.push_back(rr.v);
  return r;
}

int evaluate_printed(const std::string& s) {
  std::istringstream is(s);
  std::vector<std::string> tok;
  for (std::string t; is >> t;) tok.push_back(t);
  size_t i = 0;
  const auto tree = parse_item(tok, i);
  REQUIRE(i == tok.size());
  const Value v = to_value(*tree);
  REQUIRE(v.is_int);
  return v.v;
}

std::string read_text(const std::string& path) {
  const auto b = data::read_file_bytes(path);
  return std::string(b.begin(), b.end());
}

// Rows of a generated TSV (after the header), CRLF checked.
std::vector<std::pair<std::string, std::string>> read_rows(const std::string& path) {
  const std::string text = read_text(path);
  REQUIRE(text.rfind("Source\tTarget\r\n", 0) == 0);
  REQUIRE(text.size() >= 2);
  REQUIRE(text.substr(text.size() - 2) == "\r\n");
  std::vector<std::pair<std::string, std::string>> rows;
  size_t at = std::string("Source\tTarget\r\n").size();
  while (at < text.size()) {
    const size_t end = text.find("\r\n", at);
    REQUIRE(end != std::string::npos);
    const std::string line = text.substr(at, end - at);
    REQUIRE(line.find('\n') == std::string::npos);
    const size_t tab = line.find('\t');
    REQUIRE(tab != std::string::npos);
    REQUIRE(line.find('\t', tab + 1) == std::string::npos);
    rows.emplace_back(line.substr(0, tab), line.substr(tab + 1));
    at = end + 2;
  }
  return rows;
}

}  // namespace

TEST_CASE("listops: printing is the left-nested tuple form, values as to_value", "[data][lra]") {
  // (MAX 2 9 (MIN 4 7) 0): 4 arguments -> 5 parens before [MAX.
  const std::string t1 = compact("[MAX 2 9 [MIN 4 7 ] 0 ]");
  CHECK(lra::listops_to_string(t1) == "( ( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )");
  CHECK(lra::listops_evaluate(t1) == 9);
  // MED of an even count: mean of the middle two, truncated: (4 + 7) / 2 = 5.5 -> 5; SM = 21 % 10.
  const std::string t2 = compact("[SM 2 9 [MED 4 7 1 8 ] 5 ]");
  CHECK(lra::listops_evaluate(t2) == 1);
  CHECK(lra::listops_evaluate(compact("[MED 4 7 1 8 ]")) == 5);
  CHECK(lra::listops_evaluate(compact("[MED 3 1 2 ]")) == 2);
  CHECK(lra::listops_evaluate(compact("[MIN [MAX 1 3 ] [SM 9 9 ] ]")) == 3);
  CHECK(lra::listops_to_string(compact("[SM 9 9 ]")) == "( ( ( [SM 9 ) 9 ) ] )");
  CHECK(evaluate_printed(lra::listops_to_string(t1)) == 9);
  CHECK(evaluate_printed(lra::listops_to_string(t2)) == 1);
  CHECK_THROWS_WITH(lra::listops_evaluate(compact("[MAX 1 2")), Contains("without ']'"));
  CHECK_THROWS_WITH(lra::listops_evaluate(compact("[MAX 1 ] 3")), Contains("trailing"));
}

TEST_CASE("listops: sampled trees keep the length window and the grammar", "[data][lra]") {
  lra::ListOpsOptions o;
  int kept = 0;
  std::vector<int> ops(4, 0);
  for (uint64_t a = 0; a < 3000; ++a) {
    const std::string t = lra::listops_sample(7, a, o);
    if (t.empty()) continue;
    ++kept;
    CHECK(t.size() > 500);
    CHECK(t.size() < 2000);
    // Every operator has 2..10 arguments and nesting stays within depth 10.
    std::vector<int> args;
    int max_depth = 0;
    for (char c : t) {
      const auto u = static_cast<uint8_t>(c);
      if (u == lra::kListOpsEnd) {
        CHECK(args.back() >= 2);
        CHECK(args.back() <= 10);
        args.pop_back();
        continue;
      }
      if (!args.empty()) ++args.back();
      if (u >= lra::kListOpsMin) {
        ++ops[u - lra::kListOpsMin];
        args.push_back(0);
        max_depth = std::max<int>(max_depth, static_cast<int>(args.size()));
      }
    }
    CHECK(args.empty());
    CHECK(max_depth <= 9);  // operators live at depths 1..9; depth 10 is always a digit
    CHECK(lra::listops_sample(7, a, o) == t);  // a pure function of (seed, attempt)
  }
  CHECK(kept > 10);
  for (int k = 0; k < 4; ++k) CHECK(ops[k] > 0);
}

TEST_CASE("listops: generated files have the release format and true targets", "[data][lra]") {
  TempDir dir;
  lra::ListOpsOptions o;
  o.train = 40;
  o.val = 6;
  o.test = 5;
  o.seed = 11;
  o.threads = 2;
  const auto paths = lra::generate_listops_files(dir.str(), o);
  REQUIRE(paths.size() == 3);
  CHECK(paths[0] == dir.file("basic_train.tsv"));
  CHECK(paths[1] == dir.file("basic_val.tsv"));
  CHECK(paths[2] == dir.file("basic_test.tsv"));
  std::set<std::string> all;
  size_t total = 0;
  std::vector<size_t> sizes;
  for (const auto& p : paths) {
    const auto rows = read_rows(p);
    sizes.push_back(rows.size());
    for (const auto& [source, target] : rows) {
      // Token count after LRA's bracket stripping: strictly inside (500, 2000).
      const auto ids = lra::listops_tokenize(source);
      CHECK(ids.size() > 500);
      CHECK(ids.size() < 2000);
      CHECK(std::count(ids.begin(), ids.end(), lra::kListOpsUnknown) == 0);
      CHECK(target == std::to_string(evaluate_printed(source)));
      all.insert(source);
      ++total;
    }
  }
  CHECK(sizes == std::vector<size_t>{40, 6, 5});
  CHECK(all.size() == total);  // duplicates removed across the splits

  // Same seed -> the same bytes, whatever the thread count; another seed differs.
  TempDir again, other;
  o.threads = 1;
  lra::generate_listops_files(again.str(), o);
  for (const char* f : {"basic_train.tsv", "basic_val.tsv", "basic_test.tsv"})
    CHECK(read_text(dir.file(f)) == read_text(again.file(f)));
  o.seed = 12;
  lra::generate_listops_files(other.str(), o);
  CHECK(read_text(dir.file("basic_train.tsv")) != read_text(other.file("basic_train.tsv")));

  // The loader reads them back: ids of the first train example by hand.
  const auto ds = load_lra_listops(dir.str(), "train");
  REQUIRE(ds->size() == 40);
  CHECK(ds->num_classes() == 10);
  const auto rows = read_rows(dir.file("basic_train.tsv"));
  const Example ex = ds->get(0);
  CHECK(ex.input.sizes() == Shape{2048});
  CHECK(ex.input.dtype() == DType::i64);
  CHECK(ex.label == std::stoi(rows[0].second));
  const auto got = ex.input.to_vector<int64_t>();
  std::istringstream is(rows[0].first);
  size_t k = 0;
  for (std::string t; is >> t;) {
    if (t == "(" || t == ")") continue;
    const int64_t want = t == "]" ? 5 : t == "[MIN" ? 1 : t == "[MAX" ? 2 : t == "[MED" ? 3 : t == "[SM" ? 4 : 6 + std::stoi(t);
    REQUIRE(k < got.size());
    CHECK(got[k] == want);
    ++k;
  }
  for (; k < got.size(); ++k) REQUIRE(got[k] == 0);
}

TEST_CASE("listops loader: vocabulary, cut, padding and errors", "[data][lra]") {
  TempDir dir;
  test::write_bytes(dir.file("basic_train.tsv"),
                    [] {
                      const std::string s =
                          "Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n( ( ( [SM 1 ) ( ( ( [MED 0 ) 4 ) ] ) ) ] )\t3\r\n"
                          "( ( ( [MIN 7 ) Q ) ] )\t7\n";
                      return std::vector<uint8_t>(s.begin(), s.end());
                    }());
  CHECK(lra::listops_vocabulary().size() == 15);
  CHECK(lra::listops_token_id("X") == 5);
  CHECK(lra::listops_token_id("0") == 6);
  CHECK(lra::listops_token_id("9") == 15);
  CHECK(lra::listops_token_id("[FIRST") == 16);

  const auto ds = load_lra_listops(dir.str(), "train", {5, 8});
  REQUIRE(ds->size() == 3);
  CHECK(ds->get(0).input.to_vector<int64_t>() == std::vector<int64_t>{2, 8, 15, 5, 0, 0, 0, 0});
  CHECK(ds->get(0).label == 9);
  // [SM 1 [MED 0 4 ] ] is 7 tokens, cut to 5.
  CHECK(ds->get(1).input.to_vector<int64_t>() == std::vector<int64_t>{4, 7, 3, 6, 10, 0, 0, 0});
  CHECK(ds->get(1).label == 3);
  CHECK(ds->get(2).input.to_vector<int64_t>() == std::vector<int64_t>{1, 13, 16, 5, 0, 0, 0, 0});  // Q: unknown

  auto write = [&](const std::string& text) {
    test::write_bytes(dir.file("basic_val.tsv"), std::vector<uint8_t>(text.begin(), text.end()));
  };
  write("( ( ( [MAX 2 ) 9 ) ] )\t9\n");
  CHECK_THROWS_WITH(load_lra_listops(dir.str(), "val"), Contains("basic_val.tsv") && Contains("line 1") && Contains("header"));
  write("Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n( ( ( [MAX 2 ) 9 ) ] ) 9\n");
  CHECK_THROWS_WITH(load_lra_listops(dir.str(), "val"), Contains("basic_val.tsv") && Contains("line 3") && Contains("2 tab-separated"));
  write("Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t12\n");
  CHECK_THROWS_WITH(load_lra_listops(dir.str(), "val"), Contains("line 2") && Contains("0..9") && Contains("'12'"));
  write("");
  CHECK_THROWS_WITH(load_lra_listops(dir.str(), "val"), Contains("basic_val.tsv") && Contains("empty"));
  CHECK_THROWS_WITH(load_lra_listops(dir.str(), "test"), Contains("basic_test.tsv"));
  CHECK_THROWS_WITH(load_lra_listops(dir.str(), "dev"), Contains("unknown split 'dev'"));
}
