// Memory-mapping a file into an ArrayBuffer (map_file.cc).
#pragma once
#include <napi.h>

namespace kiln {
Napi::Value mapFileBinding(const Napi::CallbackInfo& info);
}
