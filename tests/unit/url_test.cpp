// Endpoint URLs: parsing, and naming them without the secrets providers put in them. The table
// covers each major provider's URL shape; every key is drawn from several alphabets (hex, base58,
// base64 with + / = ~ . _ -), short and long, so that no rule depends on what a key looks like.

#include <gtest/gtest.h>

#include "ingest/url.hpp"

namespace chainidx::ingest {
namespace {

const std::vector<std::string> kKeys = {
    "9aa3d95b3bc440fa88ea12eaa4456161",              // Infura: 32 hex
    "AbCdEfGhIjKlMnOpQrStUvWxYz012345",              // Alchemy: base62
    "k3y",                                           // short
    "a1b2c3d4",                                      // 8 characters, mixed
    "abc.def~ghi",                                   // dots and tildes
    "Zm9vYmFyYmF6+/qux=",                            // base64 (the slash splits it into two segments)
    "s3cr3t_with-dash_and_underscore",               // word characters
    "0123456789",                                    // digits only
};

struct Shape {
  std::string provider;
  std::string pattern;   // KEY is replaced by each key
  std::string label;     // endpoint_label()
  std::string redacted;  // redact_endpoint_url()
};

const std::vector<Shape> kShapes = {
    {"Infura", "https://mainnet.infura.io/v3/KEY", "https://***.infura.io", "https://***.infura.io/***"},
    {"Infura ws", "wss://mainnet.infura.io/ws/v3/KEY", "wss://***.infura.io", "wss://***.infura.io/***"},
    {"Alchemy", "https://eth-mainnet.g.alchemy.com/v2/KEY", "https://***.***.alchemy.com", "https://***.***.alchemy.com/***"},
    {"QuickNode", "https://docs-demo.quiknode.pro/KEY/", "https://***.quiknode.pro", "https://***.quiknode.pro/***"},
    {"QuickNode subdomain", "wss://KEY.quiknode.pro/", "wss://***.quiknode.pro", "wss://***.quiknode.pro"},
    {"Ankr", "https://rpc.ankr.com/eth/KEY", "https://***.ankr.com", "https://***.ankr.com/***"},
    {"Chainstack", "https://nd-123-456-789.p2pify.com/KEY", "https://***.p2pify.com", "https://***.p2pify.com/***"},
    {"GetBlock", "https://go.getblock.io/KEY/", "https://***.getblock.io", "https://***.getblock.io/***"},
    {"query key", "https://rpc.example.com/?apikey=KEY", "https://***.example.com", "https://***.example.com?***"},
    {"query key, path", "https://eth.llamarpc.com/rpc?key=KEY&x=1", "https://***.llamarpc.com", "https://***.llamarpc.com/***?***"},
    {"user-info", "https://user:KEY@node.example.org:8545/", "https://***.example.org:8545", "https://***@***.example.org:8545"},
    {"user-info, IP", "http://KEY@10.0.0.7:8545", "http://10.0.0.7:8545", "http://***@10.0.0.7:8545"},
    {"subdomain key", "https://KEY.eth.rpc.example.co.uk/", "https://***.***.***.example.co.uk", "https://***.***.***.example.co.uk"},
};

std::string with_key(std::string s, const std::string& key) {
  for (auto at = s.find("KEY"); at != std::string::npos; at = s.find("KEY", at + key.size())) s.replace(at, 3, key);
  return s;
}

TEST(EndpointUrl, ProviderShapesAreNamedAndPrintedWithoutTheirKey) {
  for (const auto& shape : kShapes) {
    for (const auto& key : kKeys) {
      // A key that a URL cannot hold verbatim in that place is not a shape a provider sends:
      // host labels hold letters, digits and '-' only.
      bool in_host = shape.pattern.find("://KEY") != std::string::npos;
      if (in_host && key.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != std::string::npos)
        continue;
      if (shape.pattern.find("KEY@") != std::string::npos && key.find('/') != std::string::npos) continue;  // would be %2F
      std::string url = with_key(shape.pattern, key);
      ASSERT_TRUE(parse_url(url)) << url;
      std::string label = endpoint_label(url), redacted = redact_endpoint_url(url);
      EXPECT_EQ(label, shape.label) << shape.provider << " " << url;
      // The printed form of a URL whose key is a segment with '/' in it masks the path whole too.
      EXPECT_EQ(redacted, shape.redacted) << shape.provider << " " << url;
      auto lower = [](std::string t) {
        for (auto& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return t;
      };
      for (const auto& part : {key, key.substr(0, key.find_first_of("+/=.~"))}) {
        if (part.size() < 3) continue;
        EXPECT_EQ(lower(label).find(lower(part)), std::string::npos) << shape.provider << ": key in label " << label;
        EXPECT_EQ(lower(redacted).find(lower(part)), std::string::npos) << shape.provider << ": key in " << redacted;
      }
    }
  }
}

TEST(EndpointUrl, LocalEndpointsKeepTheirAddress) {
  EXPECT_EQ(endpoint_label("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
  EXPECT_EQ(endpoint_label("ws://localhost:8546"), "ws://localhost:8546");
  EXPECT_EQ(endpoint_label("ws://[::1]:9000/ws"), "ws://[::1]:9000");
  EXPECT_EQ(redact_endpoint_url("ws://127.0.0.1:8545/ws"), "ws://127.0.0.1:8545/***");
  EXPECT_EQ(redact_endpoint_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
  EXPECT_EQ(endpoint_label("https://node.internal:443"), "https://node.internal:443") << "not in the suffix list: last label kept";
  EXPECT_EQ(endpoint_label("not a url"), "***");
}

TEST(Url, PartsAndDefaults) {
  auto u = parse_url("wss://eth.example.com/v2/KEY?x=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "eth.example.com");
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->target, "/v2/KEY?x=1");
  EXPECT_TRUE(u->tls());
  u = parse_url("http://user:pw@127.0.0.1:8545");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, "8545");
  EXPECT_EQ(u->target, "/");
  EXPECT_FALSE(u->tls());
  u = parse_url("ws://[::1]:9000/ws");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "9000");
  u = parse_url("https://rpc.example.com?apikey=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->target, "/?apikey=1");
  EXPECT_TRUE(u->credentials.empty());
  u = parse_url("https://indexer:p%40ss@node.example.org/rpc");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->credentials, "indexer:p@ss") << "percent-decoded";
  EXPECT_EQ(u->authorization(), "Basic aW5kZXhlcjpwQHNz");
  EXPECT_FALSE(parse_url("ftp://x"));
  EXPECT_FALSE(parse_url("http://:80"));
  EXPECT_FALSE(parse_url("http://host:8a"));
  EXPECT_FALSE(parse_url("http://host:123456"));
  EXPECT_FALSE(parse_url("127.0.0.1:8545"));
}

}  // namespace
}  // namespace chainidx::ingest
