// Verbatim chat templates of the checkpoints this engine can render natively.
#pragma once

namespace dsv3::known_templates {

extern const char* const kDeepSeekV3;

}  // namespace dsv3::known_templates
