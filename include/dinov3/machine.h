// The machine a run happens on, for reports and benchmark records.
#pragma once

#include <string>

namespace dinov3 {

std::string cpu_brand_string();  // "Intel(R) Xeon(R) ..." or "unknown CPU"
int cpu_core_count();            // logical processors this process may run on

}  // namespace dinov3
