// A read-only view of a zip archive held in memory (the layout torch.save writes): the central directory
// is parsed once, every offset and size is checked against the buffer, and records are returned as
// pointers into it. Only what PyTorch checkpoints use is supported: a single disk, ZIP64 sizes and
// offsets, and uncompressed ("stored") records for anything that is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dinov3/status.h"

namespace dinov3::io {

struct ZipRecord {
  std::string name;
  uint16_t method = 0;              // 0 = stored; anything else is compressed
  std::span<const uint8_t> bytes;   // the record's bytes as they lie in the archive
  uint32_t crc32 = 0;               // from the central directory; 0: none was computed (or the data's is 0)
};

class ZipDirectory {
 public:
  // Parses the directory of the archive occupying `data`; the buffer must outlive the directory.
  static Result<ZipDirectory> parse(std::span<const uint8_t> data);

  const std::vector<ZipRecord>& records() const { return records_; }
  const ZipRecord* find(std::string_view name) const;

  // The bytes of a stored record, checked against the record's CRC-32; an error naming the record when it
  // is absent, compressed or damaged. A CRC-32 of 0 is taken as "not computed" (torch.save with
  // torch.serialization.set_crc32_options(False) writes 0), so such a record is not checked.
  Result<std::span<const uint8_t>> stored(std::string_view name) const;

 private:
  std::vector<ZipRecord> records_;
};

}  // namespace dinov3::io
