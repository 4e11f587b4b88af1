// ListOps (Long Range Arena, DATA.md section 2): the generator of
// `lra_benchmarks/data/listops.py`, its printing, its evaluation and the
// task's token vocabulary.
//
// Grammar and sampling, exactly as the LRA script: a node at depth < max_depth
// is an operator with probability VALUE_P = 0.25 (else a digit 0..9; at
// max_depth always a digit); an operator takes randint(2, max_args) arguments
// drawn first, then its operator from [MIN [MAX [MED [SM. The root is at depth
// 1. A tree's length is its token count with brackets stripped (digits 1,
// operator + ']' 2), and a tree is kept when min_length < length < max_length.
// Printing is the left-nested tuple form:
//   ( ( ( [OP a1 ) a2 ) ... ak ) ] )     (k+1 opening parens before [OP)
// Values: MIN, MAX, MED = int(np.median) (mean of the middle two, truncated),
// SM = sum % 10.
//
// Ordering and randomness (ours, as the Python set order cannot be
// reproduced): attempt a (a = 0, 1, 2, ...) draws its tree from Philox
// (core/rng.h) with key `seed` at counter a * 2^32, so every attempt is
// independent of the thread that ran it. Accepted trees are collected in
// attempt order, duplicates dropped (first occurrence kept), until
// train + val + test unique trees exist; that list is shuffled (Fisher-Yates,
// Philox key `seed` at counter 2^63) and cut into train, val, test, standing
// in for the set's hash-order iteration. Same seed and sizes -> same files,
// for any thread count. A tree is abandoned as soon as its length reaches
// max_length (it would be rejected anyway), which changes no kept tree.
//
// Files: basic_{train,val,test}.tsv, tab-separated, header `Source\tTarget`,
// one `<expression>\t<value>` per line, lines ending "\r\n" as Python's csv
// writer ends them.
//
// Compact form used in memory: one byte per stripped token in prefix order,
// digits 0..9, operators kMin..kSum, kEnd for ']'.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dimix::lra {

enum ListOpsCode : uint8_t { kListOpsMin = 10, kListOpsMax = 11, kListOpsMed = 12, kListOpsSum = 13, kListOpsEnd = 14 };

struct ListOpsOptions {
  int64_t train = 96000, val = 2000, test = 2000;
  int max_depth = 10, max_args = 10;
  int min_length = 500, max_length = 2000;  // kept when min_length < length < max_length
  uint64_t seed = 0;
  int threads = 0;  // generation / formatting threads; 0: all cores
};

// Attempt `attempt` of a run with `seed`: the tree in compact form, or an
// empty string when its length is outside the window.
std::string listops_sample(uint64_t seed, uint64_t attempt, const ListOpsOptions& options);

// The LRA printing of a compact tree; Error on a malformed code string.
std::string listops_to_string(const std::string& compact);
// The value (0..9) of a compact tree; Error on a malformed code string.
int listops_evaluate(const std::string& compact);

struct ListOpsSplits {
  std::vector<std::string> train, val, test;  // compact trees
};

// progress(done, total): unique trees collected so far.
using ListOpsProgress = std::function<void(int64_t done, int64_t total)>;
ListOpsSplits generate_listops(const ListOpsOptions& options, const ListOpsProgress& progress = {});

// Writes `examples` as an LRA ListOps TSV (header, "\r\n" line ends).
void write_listops_tsv(const std::string& path, const std::vector<std::string>& examples, int threads = 0);

// Generates and writes <dir>/basic_{train,val,test}.tsv (creating dir);
// returns the three paths.
std::vector<std::string> generate_listops_files(const std::string& dir, const ListOpsOptions& options,
                                                const ListOpsProgress& progress = {});

// ---- the task's vocabulary (DATA.md section 2) ---------------------------------
// Source text is tokenised as LRA does: ']' -> 'X', '(' and ')' removed, split
// on whitespace. Ids: 0 pad, then [MIN [MAX [MED [SM X 0 1 2 3 4 5 6 7 8 9 as
// 1..15, anything else 16 (unknown). Vocabulary size 17.
constexpr int kListOpsPad = 0, kListOpsUnknown = 16, kListOpsVocab = 17;
const std::vector<std::string>& listops_vocabulary();  // the 15 tokens, id - 1 order
int listops_token_id(const std::string& token);
// The ids of a source string (no padding, no cut).
std::vector<int> listops_tokenize(const std::string& source);

}  // namespace dimix::lra
