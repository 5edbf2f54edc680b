// What the model's checks share about RoPE periods (rope.cpp): compute_rope_table refuses a bad period as
// an invalid argument, check_checkpoint as a format error naming where the periods came from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dinov3 {

// The index of the first period that is not a positive finite number (RoPE's angles divide by them: 0, an
// infinity or a NaN makes every output NaN), or -1.
int64_t first_bad_rope_period(const std::vector<double>& periods);
// "period k is <value>" (%g), how both checks name it.
std::string describe_rope_period(const std::vector<double>& periods, int64_t k);

}  // namespace dinov3
