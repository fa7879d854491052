// A small blocking HTTP/1.1 client for jobctl and the tests: one connection
// per request, bearer token optional.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace qjobs::server {

struct HttpResult {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

class HttpClient {
 public:
  // `server` is "http://HOST:PORT" or "HOST:PORT".
  HttpClient(const std::string& server, std::string token = "");

  // Throws Error(io) when the server cannot be reached.
  HttpResult request(const std::string& method, const std::string& target, const std::string& body = "",
                     const std::map<std::string, std::string>& headers = {});
  // Calls on_data with each piece of the body as it arrives; returns the status.
  int stream(const std::string& target, const std::function<void(std::string_view)>& on_data);
  // Writes the body to `out` (when the status is 200); returns the status.
  int download(const std::string& target, const std::filesystem::path& out);

  const std::string& host() const { return host_; }
  const std::string& port() const { return port_; }

 private:
  std::string host_;
  std::string port_;
  std::string token_;
};

// Percent-encodes one path segment or query value.
std::string url_encode(std::string_view s);

}  // namespace qjobs::server
