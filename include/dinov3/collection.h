// Image collections as `dinov3 embed`, Python and dinov3.distributed see them: which files the inputs name,
// and how an embedding output and its index of paths are written. One definition of each rule, so every
// way of embedding a collection lists the same files in the same order and writes the same files.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dinov3/files.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3 {

// .jpg .jpeg .png .webp .bmp, any case: the files a folder contributes.
bool has_image_extension(std::string_view path);

// The image files `specs` name, in order: a file as given (a missing one too: it is reported as skipped
// when read, like any unreadable file); a folder searched recursively for image files, sorted by path;
// "@list.txt" read one path per line (empty lines ignored, a trailing '\r' dropped). A link in a folder
// that leads nowhere (dangling, or in a loop) is kept, so that it is listed as skipped with its reason.
Result<std::vector<std::string>> expand_inputs(const std::vector<std::string>& specs);

// Text as one line, any bytes kept: backslash and every byte below 0x20 or equal to 0x7f become \\, \n,
// \r, \t or \xHH; every other byte (UTF-8 included) stays as it is. File names may hold any byte but
// NUL, so the line-based files embed writes hold them escaped; Python's codecs.escape_decode(line)[0]
// gives the bytes back.
std::string escape_line(std::string_view text);
// The inverse of escape_line; false when a backslash starts anything but one of those escapes.
bool unescape_line(std::string_view line, std::string* out);

// One path per line, escaped: an output's index, and the input lists of resumable state.
std::string path_lines(const std::vector<std::string>& paths);
// The inverse of path_lines; an error for a line that is not one path escaped.
Result<std::vector<std::string>> parse_path_lines(std::string_view text);

// The .npy v1.0 header for a C-order float32 array of `shape` (padded so the data is 64-byte aligned).
std::string npy_header(const Shape& shape);

// The index beside an output: "DIR/NAME.npy" -> "DIR/NAME.index.txt".
std::string embed_index_path(const std::string& out);

// Refuses an output before any work is done: a folder (or a name ending in '/'), and, unless
// `allow_existing`, an existing output or index (the message says --overwrite replaces them); an output
// or index that exists and is not a regular file (check_output_file).
Status check_embed_output(const std::string& out, bool allow_existing);

// Publishes a float32 .npy of shape `shape` (rows first) and its index (path_lines(paths), one path per
// row): `write_rows` writes the rows' bytes in order through the WriteFn it is given (exactly
// shape_numel(shape) floats); both files are written in full beside their destinations, then moved into
// place together (write_files_together), so a failure leaves any previous output and index as they were.
Status publish_npy_with_index(const std::string& out, const Shape& shape, const ProduceFn& write_rows,
                              const std::vector<std::string>& paths, bool overwrite);

}  // namespace dinov3
