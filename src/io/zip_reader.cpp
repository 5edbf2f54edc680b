#include "io/zip_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>

namespace dinov3::io {
namespace {

// Record signatures and fixed sizes from the zip application note (APPNOTE.TXT).
constexpr uint32_t kEocdSignature = 0x06054b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint32_t kZip64EocdSignature = 0x06064b50;
constexpr uint32_t kCentralSignature = 0x02014b50;
constexpr uint32_t kLocalSignature = 0x04034b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EocdSize = 56;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
constexpr size_t kMaxCommentSize = 0xffff;
constexpr uint16_t kZip64ExtraId = 0x0001;
// A 32-bit field holding this value means "the real value is in the ZIP64 extra field".
constexpr uint32_t kZip64Marker = 0xffffffff;
constexpr uint16_t kEncryptedFlag = 0x0001;

// Zip integers are little-endian whatever the host.
uint64_t load_le(const uint8_t* p, size_t nbytes) {
  uint64_t value = 0;
  for (size_t i = nbytes; i-- > 0;) value = (value << 8) | p[i];
  return value;
}

// True when [offset, offset + length) lies inside a buffer of `size` bytes, without overflowing.
bool fits(uint64_t offset, uint64_t length, uint64_t size) { return offset <= size && length <= size - offset; }

Status format_error(std::string message) { return make_error(ErrorCode::kFormatError, std::move(message)); }

struct DirectoryLocation {
  uint64_t entries = 0;
  uint64_t size = 0;
  uint64_t offset = 0;
  uint64_t end = 0;  // where the end records begin; the directory must stop before them
};

// The EOCD record ends the archive, followed only by a comment of at most 64 KiB, so the search for its
// signature runs backwards over that window.
Result<size_t> find_eocd(std::span<const uint8_t> data) {
  if (data.size() < kEocdSize) return format_error("not a zip archive: no end of central directory record");
  const size_t last = data.size() - kEocdSize;
  const size_t first = last > kMaxCommentSize ? last - kMaxCommentSize : 0;
  for (size_t pos = last + 1; pos-- > first;) {
    if (load_le(&data[pos], 4) != kEocdSignature) continue;
    const uint64_t comment_size = load_le(&data[pos + 20], 2);
    if (fits(pos + kEocdSize, comment_size, data.size())) return pos;
  }
  return format_error("not a zip archive: no end of central directory record");
}

// torch.save writes the ZIP64 end records whenever sizes or offsets may exceed 32 bits; when the locator
// sits right before the EOCD record its values replace the EOCD's (which then hold 0xffff markers).
Result<DirectoryLocation> read_zip64_location(std::span<const uint8_t> data, size_t locator_pos) {
  const uint8_t* locator = &data[locator_pos];
  if (load_le(locator + 4, 4) != 0 || load_le(locator + 16, 4) > 1)
    return make_error(ErrorCode::kUnsupported, "multi-disk zip archives are not supported");
  const uint64_t record_pos = load_le(locator + 8, 8);
  if (!fits(record_pos, kZip64EocdSize, locator_pos) || load_le(&data[record_pos], 4) != kZip64EocdSignature)
    return format_error("zip ZIP64 end of central directory record is missing or outside the file");
  const uint8_t* record = &data[record_pos];
  if (load_le(record + 16, 4) != 0 || load_le(record + 20, 4) != 0)
    return make_error(ErrorCode::kUnsupported, "multi-disk zip archives are not supported");
  return DirectoryLocation{load_le(record + 32, 8), load_le(record + 40, 8), load_le(record + 48, 8), record_pos};
}

Result<DirectoryLocation> locate_directory(std::span<const uint8_t> data) {
  DINOV3_ASSIGN_OR_RETURN(const size_t eocd_pos, find_eocd(data));
  if (eocd_pos >= kZip64LocatorSize &&
      load_le(&data[eocd_pos - kZip64LocatorSize], 4) == kZip64LocatorSignature)
    return read_zip64_location(data, eocd_pos - kZip64LocatorSize);
  const uint8_t* eocd = &data[eocd_pos];
  if (load_le(eocd + 4, 2) != 0 || load_le(eocd + 6, 2) != 0)
    return make_error(ErrorCode::kUnsupported, "multi-disk zip archives are not supported");
  return DirectoryLocation{load_le(eocd + 10, 2), load_le(eocd + 12, 4), load_le(eocd + 16, 4), eocd_pos};
}

// Sizes and the local header offset of a central directory entry, after ZIP64 substitution.
struct EntryPlacement {
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_offset = 0;
};

// The payload of the extra field with header `id`, or an empty span when there is none.
std::span<const uint8_t> find_extra_field(std::span<const uint8_t> extra, uint16_t id) {
  size_t pos = 0;
  while (pos + 4 <= extra.size()) {
    const uint64_t length = load_le(&extra[pos + 2], 2);
    if (!fits(pos + 4, length, extra.size())) break;
    if (load_le(&extra[pos], 2) == id) return extra.subspan(pos + 4, length);
    pos += 4 + length;
  }
  return {};
}

// The ZIP64 extra field holds, in this order, only the values whose 32-bit fields carry the marker.
Status apply_zip64_extra(std::span<const uint8_t> extra, const std::string& name, EntryPlacement* placement) {
  const std::span<const uint8_t> values = find_extra_field(extra, kZip64ExtraId);
  size_t pos = 0;
  for (uint64_t* field : {&placement->uncompressed_size, &placement->compressed_size, &placement->local_offset}) {
    if (*field != kZip64Marker) continue;
    if (pos + 8 > values.size()) return format_error("zip record '" + name + "' lacks its ZIP64 sizes");
    *field = load_le(&values[pos], 8);
    pos += 8;
  }
  return Status::ok_status();
}

// Reads one central directory entry at `pos` (inside `directory`) and the local header it points to.
Result<ZipRecord> read_entry(std::span<const uint8_t> data, std::span<const uint8_t> directory, size_t* pos) {
  if (!fits(*pos, kCentralSize, directory.size()) || load_le(&directory[*pos], 4) != kCentralSignature)
    return format_error("zip central directory is truncated or corrupt");
  const uint8_t* entry = &directory[*pos];
  const uint16_t flags = static_cast<uint16_t>(load_le(entry + 8, 2));
  const uint16_t method = static_cast<uint16_t>(load_le(entry + 10, 2));
  const uint32_t crc = static_cast<uint32_t>(load_le(entry + 16, 4));
  EntryPlacement placement{load_le(entry + 20, 4), load_le(entry + 24, 4), load_le(entry + 42, 4)};
  const size_t name_size = load_le(entry + 28, 2);
  const size_t extra_size = load_le(entry + 30, 2);
  const size_t comment_size = load_le(entry + 32, 2);
  const uint64_t disk = load_le(entry + 34, 2);
  if (!fits(*pos + kCentralSize, name_size + extra_size + comment_size, directory.size()))
    return format_error("zip central directory is truncated or corrupt");
  const auto* name_begin = reinterpret_cast<const char*>(entry + kCentralSize);
  std::string name(name_begin, name_size);
  DINOV3_RETURN_IF_ERROR(
      apply_zip64_extra(directory.subspan(*pos + kCentralSize + name_size, extra_size), name, &placement));
  *pos += kCentralSize + name_size + extra_size + comment_size;

  if (disk != 0) return make_error(ErrorCode::kUnsupported, "multi-disk zip archives are not supported");
  if (flags & kEncryptedFlag)
    return make_error(ErrorCode::kUnsupported, "zip record '" + name + "' is encrypted");
  if (method == 0 && placement.compressed_size != placement.uncompressed_size)
    return format_error("zip record '" + name + "' is stored but its two sizes differ");

  // The local header repeats the name and has its own extra field (torch pads records to 64-byte
  // alignment there), so only it tells where the data begins. Its sizes may be zero (data descriptor).
  const uint64_t local = placement.local_offset;
  if (!fits(local, kLocalSize, data.size()) || load_le(&data[local], 4) != kLocalSignature)
    return format_error("zip local header of '" + name + "' is missing or outside the file");
  const uint64_t local_name_size = load_le(&data[local + 26], 2);
  const uint64_t local_extra_size = load_le(&data[local + 28], 2);
  const uint64_t data_pos = local + kLocalSize + local_name_size + local_extra_size;
  if (!fits(local + kLocalSize, local_name_size + local_extra_size, data.size()) ||
      std::string_view(reinterpret_cast<const char*>(&data[local + kLocalSize]), local_name_size) != name)
    return format_error("zip local header of '" + name + "' does not match the central directory");
  if (!fits(data_pos, placement.compressed_size, data.size()))
    return format_error("zip record '" + name + "' extends past the end of the file");
  return ZipRecord{std::move(name), method, data.subspan(data_pos, placement.compressed_size), crc};
}

}  // namespace

Result<ZipDirectory> ZipDirectory::parse(std::span<const uint8_t> data) {
  DINOV3_ASSIGN_OR_RETURN(const DirectoryLocation location, locate_directory(data));
  if (!fits(location.offset, location.size, location.end))
    return format_error("zip central directory lies outside the file");
  // Each entry takes at least kCentralSize bytes, which bounds the count before anything is reserved.
  if (location.entries > location.size / kCentralSize)
    return format_error("zip central directory claims more entries than it can hold");
  const auto directory = data.subspan(location.offset, location.size);

  ZipDirectory result;
  result.records_.reserve(location.entries);
  size_t pos = 0;
  for (uint64_t i = 0; i < location.entries; ++i) {
    DINOV3_ASSIGN_OR_RETURN(ZipRecord record, read_entry(data, directory, &pos));
    result.records_.push_back(std::move(record));
  }
  auto by_name = [](const ZipRecord& a, const ZipRecord& b) { return a.name < b.name; };
  std::sort(result.records_.begin(), result.records_.end(), by_name);
  const auto same_name = [](const ZipRecord& a, const ZipRecord& b) { return a.name == b.name; };
  const auto duplicate = std::adjacent_find(result.records_.begin(), result.records_.end(), same_name);
  if (duplicate != result.records_.end())
    return format_error("zip holds two records named '" + duplicate->name + "'");
  return result;
}

const ZipRecord* ZipDirectory::find(std::string_view name) const {
  const auto it = std::lower_bound(records_.begin(), records_.end(), name,
                                   [](const ZipRecord& record, std::string_view key) { return record.name < key; });
  return it != records_.end() && it->name == name ? &*it : nullptr;
}

Result<std::span<const uint8_t>> ZipDirectory::stored(std::string_view name) const {
  const ZipRecord* record = find(name);
  if (record == nullptr) return format_error("zip record missing: " + std::string(name));
  if (record->method != 0)
    return make_error(ErrorCode::kUnsupported, "zip record '" + record->name +
                                                   "' is compressed; compressed zip entries are not supported");
  if (record->crc32 != 0) {
    // zlib's crc32 takes a uInt length: the record in chunks.
    uLong crc = ::crc32(0L, Z_NULL, 0);
    for (size_t at = 0; at < record->bytes.size();) {
      const size_t n = std::min<size_t>(record->bytes.size() - at, size_t{1} << 30);
      crc = ::crc32(crc, record->bytes.data() + at, static_cast<uInt>(n));
      at += n;
    }
    if (static_cast<uint32_t>(crc) != record->crc32) {
      char what[96];
      std::snprintf(what, sizeof(what), "' is damaged: its CRC-32 is %08x, the archive says %08x",
                    static_cast<unsigned>(crc), static_cast<unsigned>(record->crc32));
      return format_error("zip record '" + record->name + what);
    }
  }
  return record->bytes;
}

}  // namespace dinov3::io
