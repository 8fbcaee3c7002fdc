#pragma once

#include <boost/asio/ssl/context.hpp>

#include <string>

namespace chainidx::ingest {

/// The client TLS context: system CA store, peer verification on, TLS 1.2 or newer.
/// Built once; shared by every connection (thread-safe after construction).
boost::asio::ssl::context& client_tls_context();

/// Adds the PEM certificates in `pem_file` to what client_tls_context() trusts (a private CA in
/// front of self-hosted nodes). Call before connections are made. Throws on an unreadable file.
void trust_ca_file(const std::string& pem_file);

}  // namespace chainidx::ingest
