// The web dashboard's static files (server/dashboard/), compiled into the
// server by cmake/embed_files.cmake so that nothing is fetched at run time.
#pragma once

#include <string_view>
#include <vector>

namespace qjobs::server {

struct DashboardAsset {
  std::string_view name;  // "index.html", "app.js", ...
  std::string_view content_type;
  std::string_view bytes;
};

const std::vector<DashboardAsset>& dashboard_assets();

// The shipped recipes (configs/recipes/*.yaml), embedded the same way: the
// submit page's template menu offers them (GET /recipes, /recipes/NAME).
// Names are the file names ("nyuntam-awq.yaml").
const std::vector<DashboardAsset>& recipe_files();

}  // namespace qjobs::server
