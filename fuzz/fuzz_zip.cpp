// The zip reader on any bytes: the end records, ZIP64, the central directory and the local headers.
#include <span>

#include "fuzz_util.h"
#include "io/zip_reader.h"

using namespace dinov3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<io::ZipDirectory> zip = io::ZipDirectory::parse(std::span<const uint8_t>(data, size));
  if (!zip.ok()) return 0;
  for (const io::ZipRecord& record : zip->records()) {
    fuzz::expect(record.bytes.data() >= data && record.bytes.data() + record.bytes.size() <= data + size,
                 "a record's bytes lie outside the archive");
    fuzz::expect(zip->find(record.name) == &record, "find() does not return the record by its name");
    (void)zip->stored(record.name);
  }
  return 0;
}
