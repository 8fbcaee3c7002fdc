#include "ingest/tls_context.hpp"

namespace chainidx::ingest {

boost::asio::ssl::context& client_tls_context() {
  static boost::asio::ssl::context ctx = [] {
    boost::asio::ssl::context c(boost::asio::ssl::context::tls_client);
    c.set_default_verify_paths();
    c.set_verify_mode(boost::asio::ssl::verify_peer);
    c.set_options(boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3 |
                  boost::asio::ssl::context::no_tlsv1 | boost::asio::ssl::context::no_tlsv1_1);
    return c;
  }();
  return ctx;
}

void trust_ca_file(const std::string& pem_file) { client_tls_context().load_verify_file(pem_file); }

}  // namespace chainidx::ingest
