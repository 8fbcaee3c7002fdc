#include "sinks/dev_broker.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <stdexcept>

namespace chainidx::sinks {

struct DevBroker::Impl {
  rd_kafka_t* rk = nullptr;
  rd_kafka_mock_cluster_t* cluster = nullptr;
  std::string bootstraps;
};

DevBroker::DevBroker(int broker_count) : impl_(std::make_unique<Impl>()) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The mock cluster needs a client instance to live in; this one is never used to produce.
  if (rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("devbroker: ") + err);
  }
  impl_->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!impl_->rk) throw std::runtime_error(std::string("devbroker: ") + err);
  impl_->cluster = rd_kafka_mock_cluster_new(impl_->rk, broker_count);
  if (!impl_->cluster) {
    rd_kafka_destroy(impl_->rk);
    throw std::runtime_error("devbroker: could not start the mock cluster");
  }
  impl_->bootstraps = rd_kafka_mock_cluster_bootstraps(impl_->cluster);
}

DevBroker::~DevBroker() {
  if (impl_->cluster) rd_kafka_mock_cluster_destroy(impl_->cluster);
  if (impl_->rk) rd_kafka_destroy(impl_->rk);
}

const std::string& DevBroker::bootstrap_servers() const { return impl_->bootstraps; }

void DevBroker::create_topic(const std::string& name, int partitions) {
  auto err = rd_kafka_mock_topic_create(impl_->cluster, name.c_str(), partitions, 1);
  if (err) throw std::runtime_error("devbroker: create topic " + name + ": " + rd_kafka_err2str(err));
}

void DevBroker::set_broker_down(int broker_id) {
  if (auto err = rd_kafka_mock_broker_set_down(impl_->cluster, broker_id))
    throw std::runtime_error(std::string("devbroker: set down: ") + rd_kafka_err2str(err));
}

void DevBroker::set_broker_up(int broker_id) {
  if (auto err = rd_kafka_mock_broker_set_up(impl_->cluster, broker_id))
    throw std::runtime_error(std::string("devbroker: set up: ") + rd_kafka_err2str(err));
}

void DevBroker::push_request_errors(int api_key, const std::vector<int>& errors) {
  std::vector<rd_kafka_resp_err_t> codes;
  for (int e : errors) codes.push_back(static_cast<rd_kafka_resp_err_t>(e));
  rd_kafka_mock_push_request_errors_array(impl_->cluster, static_cast<int16_t>(api_key), codes.size(), codes.data());
}

}  // namespace chainidx::sinks
