// Static files of the chat page, compiled into the binary (generated from src/server/web/).
#pragma once
#include <string_view>

namespace dsv3::server {

// src/server/web/index.html: the whole chat page (HTML, CSS and JS in one file, no CDN).
std::string_view index_html();

}  // namespace dsv3::server
