// Loaders for the six Long Range Arena tasks in their released layouts
// (DATA.md sections 1-6). Every example is int64 tokens [S], right-padded
// with 0 (the pad id everywhere) to the task's sequence length S; retrieval
// examples carry the second document as input2 [S]. Labels are int64.
//
//   task           files                                        tokens (vocab)           S (cut)
//   listops        <dir>/basic_{train,val,test}.tsv             0 pad, 1..15, 16 unk (17) 2048 (2000)
//   text           <dir>/aclImdb/{train,test}/{neg,pos}/*.txt   byte + 1 (257)           4096 (4000)
//   retrieval      <dir>/new_aan_pairs.{train,eval,test}.tsv    byte + 1 (257), x2       4096 (4000) each
//   image          CIFAR-10 binary (data/cifar.h)               grey pixel + 1 (257)     1024
//   pathfinder<W>  <dir>/metadata/*.npy + imgs/<k>/*.png        pixel + 1 (257)          W*W
//
// Pixel tokens are the pixel value PLUS ONE (1..256, vocabulary 257), unlike
// LRA's raw 0..255: our LRA model (models/networks.h) builds its padding mask
// from token != 0, so a raw black pixel would be masked as padding. (LRA and
// Nystromformer mask black pixels as padding, DATA.md section 6 "Quirk"; the
// shift keeps every pixel and still fits the model's 512-entry embedding.)
//
// Splits ("train", "val", "test"):
//   listops    the three files.
//   text       train; val and test are both the test folder, as LRA.
//   retrieval  train; val = the "eval" file; test.
//   image      train = the first 45,000 of data_batch_1..5, val = the last
//              5,000, test = test_batch (the 45k/5k/10k of DATA.md section 5).
//              Grey = TF rgb_to_grayscale: trunc(float32(0.2989 R/255 +
//              0.587 G/255 + 0.114 B/255) * 255.5).
//   pathfinder the metadata files in numeric order, their lines in order,
//              empty PNG files skipped (as LRA); then [0, 80%), [80%, 90%),
//              [90%, 100%) of that order (floor of n * 8 / 10, n * 9 / 10).
//
// Every problem is a dimix::Error naming the file and the line (TSV, metadata)
// or the example index (images): a missing file or folder, a malformed line,
// a label out of range, a missing, corrupt or wrongly sized PNG.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace dimix {

// Sequence lengths: `max_length` tokens are kept (cut), then padded to
// `seq_len` (>= max_length).
struct LRALengths {
  int64_t max_length = 0, seq_len = 0;
};

// ---- the loaders -------------------------------------------------------------------------
std::shared_ptr<Dataset> load_lra_listops(const std::string& dir, const std::string& split,
                                          LRALengths lengths = {2000, 2048});
std::shared_ptr<Dataset> load_lra_text(const std::string& dir, const std::string& split,
                                       LRALengths lengths = {4000, 4096});
std::shared_ptr<Dataset> load_lra_retrieval(const std::string& dir, const std::string& split,
                                            LRALengths lengths = {4000, 4096});
std::shared_ptr<Dataset> load_lra_image(const std::string& cifar_dir, const std::string& split);
// `resolution`: the expected image width and height (32, 64, 128, 256).
std::shared_ptr<Dataset> load_lra_pathfinder(const std::string& dir, const std::string& split, int resolution);

// ---- by task name ------------------------------------------------------------------------
struct LRATaskInfo {
  std::string name;       // "listops", "text", "retrieval", "image", "pathfinder32", ...
  LRALengths lengths;     // defaults of PAPERS.md 1.6 (Nystromformer: S rounded up to a power of 2)
  int64_t classes = 2;
  int64_t vocab = 257;    // ids used by the loader: [0, vocab)
  bool dual = false;      // two documents (retrieval)
  int resolution = 0;     // pathfinder: image width
};

// listops, text, retrieval, image, pathfinder32, pathfinder64, pathfinder128
// (also "pathx"), pathfinder256. Error listing the names otherwise.
LRATaskInfo lra_task_info(const std::string& task);
std::vector<std::string> lra_task_names();

// The loader for `task` (lengths of 0 take the task's defaults).
std::shared_ptr<Dataset> make_lra_dataset(const std::string& task, const std::string& dir, const std::string& split,
                                          LRALengths lengths = {});

// ---- pieces, exposed for tests -------------------------------------------------------------
// TF's rgb_to_grayscale on one uint8 pixel.
uint8_t tf_rgb_to_gray(uint8_t r, uint8_t g, uint8_t b);
// A label column ("0", "1", "0.0", "1.0", any float that is a whole number
// in [0, classes)), or -1 when it is not one.
int64_t parse_label(const std::string& text, int64_t classes);

}  // namespace dimix
