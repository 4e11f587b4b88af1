// PNG reading and writing for the LRA image data (Pathfinder / Path-X,
// DATA.md section 6): 8-bit grayscale images [H, W], row-major, one byte a
// pixel. Decoding is stb_image's (any PNG it reads: grey, grey+alpha, RGB(A),
// 1..16 bits, converted to one 8-bit channel by stb's luma rule); encoding is
// stb_image_write's, linked privately to this file so it cannot clash with
// another stb_image_write in the same binary.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dimix::data {

struct GrayImage {
  int width = 0, height = 0;
  int channels_in_file = 0;     // 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
  std::vector<uint8_t> pixels;  // [height, width]
};

// Decodes a PNG held in memory; `source` names it in errors ("file 'x.png'").
GrayImage decode_png_gray(const uint8_t* bytes, size_t size, const std::string& source);
// Reads and decodes a PNG file. A missing, empty or corrupt file is an Error
// naming the path and stb_image's reason.
GrayImage read_png_gray(const std::string& path);

// Encodes [height, width] grey pixels as an 8-bit grayscale PNG.
std::vector<uint8_t> encode_png_gray(int width, int height, const uint8_t* pixels);
// Writes the PNG to `path` (directories must exist); Error naming the path
// when it cannot be written.
void write_png_gray(const std::string& path, int width, int height, const uint8_t* pixels);

// Writes `bytes` to `path` (truncating); Error naming the path on failure.
void write_file_bytes(const std::string& path, const void* bytes, size_t size);

}  // namespace dimix::data
