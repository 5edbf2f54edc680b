// The file helpers are public (include/dinov3/files.h); library code includes them by this name too.
#pragma once

#include "dinov3/files.h"
