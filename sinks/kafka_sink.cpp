#include "sinks/kafka_sink.hpp"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "sinks/kafka_message.hpp"

namespace chainidx::sinks {
namespace {

// Delivery outcome of one write() batch; librdkafka's delivery callback fills it.
struct BatchState {
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::mutex mu;
  std::string first_error;
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  auto* batch = static_cast<BatchState*>(m->_private);
  if (!batch) return;
  if (m->err) {
    std::lock_guard lock(batch->mu);
    if (batch->first_error.empty()) batch->first_error = rd_kafka_err2str(m->err);
    batch->failed++;
  } else {
    batch->delivered++;
  }
}

// librdkafka's own log lines, into ours (one line per event, no secrets: broker addresses only).
void on_log(const rd_kafka_t*, int level, const char* facility, const char* message) {
  auto lvl = level <= 3 ? spdlog::level::err : level == 4 ? spdlog::level::warn : spdlog::level::info;
  spdlog::log(lvl, "event=kafka_client facility={} message=\"{}\"", facility, message);
}

}  // namespace

struct KafkaSink::Impl {
  KafkaSinkConfig config;
  rd_kafka_t* rk = nullptr;
  std::string topics[3];
  std::string chain_id_header;
  std::atomic<std::uint64_t> acknowledged{0};

  void connect() {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const char* k, const std::string& v) {
      if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw SinkError(std::string("kafka config ") + k + ": " + err);
      }
    };
    set("bootstrap.servers", config.brokers);
    set("enable.idempotence", "true");
    set("acks", "all");
    set("linger.ms", "5");
    set("message.timeout.ms", std::to_string(config.delivery_timeout_ms));
    set("log_level", "4");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) throw SinkError(std::string("kafka producer: ") + err);
  }

  void disconnect() {
    if (rk) {
      rd_kafka_flush(rk, 1000);
      rd_kafka_destroy(rk);
      rk = nullptr;
    }
  }

  // An idempotent producer that hit a fatal error (e.g. a fenced or out-of-sequence producer id)
  // cannot go on; a new instance gets a new producer id. The batch is retried by the caller.
  void check_fatal() {
    char err[512];
    if (rd_kafka_fatal_error(rk, err, sizeof err) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      disconnect();
      connect();
      throw SinkError(std::string("kafka producer fatal error (producer recreated): ") + err);
    }
  }
};

KafkaSink::KafkaSink(KafkaSinkConfig config) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  for (int i = 0; i < 3; ++i) impl_->topics[i] = impl_->config.chain_name + "." + kTopicSuffixes[i];
  impl_->chain_id_header = std::to_string(impl_->config.chain_id);
  impl_->connect();
}

KafkaSink::~KafkaSink() { impl_->disconnect(); }

std::uint64_t KafkaSink::acknowledged() const { return impl_->acknowledged.load(); }

namespace {

// Which of `names` the cluster has, by a metadata request for each (which also makes a broker
// with topic auto-creation create it).
std::vector<std::string> missing_topics(rd_kafka_t* rk, const std::string* names, int count) {
  std::vector<std::string> missing;
  for (int i = 0; i < count; ++i) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, names[i].c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    bool present = err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                   md->topics[0].partition_cnt > 0;
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (!present) missing.push_back(names[i]);
  }
  return missing;
}

}  // namespace

void KafkaSink::ensure_topics() {
  rd_kafka_t* rk = impl_->rk;
  char err[512];
  // Ask first: a cluster that has the topics needs no Admin call (and the development broker,
  // librdkafka's mock cluster, has no CreateTopics API at all).
  std::vector<std::string> missing;
  {
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 1, nullptr, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw SinkError("kafka: no metadata from " + impl_->config.brokers + " within 10 s (is the broker up?)");
    for (const auto& t : impl_->topics) {
      bool found = false;
      for (int i = 0; i < md->topic_cnt; ++i) found |= t == md->topics[i].topic;
      if (!found) missing.push_back(t);
    }
    rd_kafka_metadata_destroy(md);
  }
  if (missing.empty()) return;

  std::vector<rd_kafka_NewTopic_t*> new_topics;
  for (const auto& name : missing) {
    auto* nt = rd_kafka_NewTopic_new(name.c_str(), static_cast<int>(impl_->config.partitions),
                                     static_cast<int>(impl_->config.replication_factor), err, sizeof err);
    if (!nt) {
      for (auto* t : new_topics) rd_kafka_NewTopic_destroy(t);
      throw SinkError("kafka topic " + name + ": " + err);
    }
    new_topics.push_back(nt);
  }
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_request_timeout(options, 15000, err, sizeof err);
  rd_kafka_AdminOptions_set_operation_timeout(options, 10000, err, sizeof err);
  rd_kafka_CreateTopics(rk, new_topics.data(), new_topics.size(), options, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 20000);
  std::string problem;
  if (!ev) {
    problem = "no answer to CreateTopics within 20 s";
  } else if (rd_kafka_event_error(ev)) {
    problem = rd_kafka_event_error_string(ev);
  } else {
    const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &n);
    for (size_t i = 0; i < n; ++i) {
      auto code = rd_kafka_topic_result_error(results[i]);
      if (code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        problem += std::string(rd_kafka_topic_result_name(results[i])) + ": " + rd_kafka_err2str(code) + "; ";
    }
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_queue_destroy(queue);
  for (auto* t : new_topics) rd_kafka_NewTopic_destroy(t);
  if (problem.empty()) return;

  // Last resort: a broker with auto-creation makes them on a metadata request (with its default
  // partition count, which the log says).
  auto still = missing_topics(rk, impl_->topics, 3);
  if (!still.empty()) {
    std::string list;
    for (auto& t : still) list += (list.empty() ? "" : ", ") + t;
    throw SinkError("kafka: topics " + list + " do not exist and could not be created (" + problem +
                    "); create them with " + std::to_string(impl_->config.partitions) + " partitions, or let the indexer's "
                    "principal create topics");
  }
  throw SinkError("kafka: CreateTopics failed (" + problem + ") but the broker auto-created the topics with its default "
                  "partition count; restart to go on with them, or recreate them with the configured count");
}

void KafkaSink::write(std::span<const schema::Block> blocks) {
  Impl& s = *impl_;
  BatchState batch;
  std::uint64_t produced = 0;
  for (const auto& block : blocks) {
    for (auto& m : encode_block(block, s.config.chain_id, s.config.chain_name)) {
      for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            s.rk, RD_KAFKA_V_TOPIC(s.topics[static_cast<int>(m.topic)].c_str()),
            RD_KAFKA_V_KEY(m.key.data(), m.key.size()), RD_KAFKA_V_VALUE(m.value.data(), m.value.size()),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("chain_id", s.chain_id_header.data(), static_cast<ssize_t>(s.chain_id_header.size())),
            RD_KAFKA_V_OPAQUE(&batch), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          // Messages already queued still report into `batch`: wait for them before leaving.
          rd_kafka_flush(s.rk, s.config.delivery_timeout_ms + 5000);
          throw SinkError(std::string("kafka produce: ") + rd_kafka_err2str(e));
        }
        rd_kafka_poll(s.rk, 50);
      }
      ++produced;
    }
  }
  // Every message either is acknowledged or times out after message.timeout.ms; flush serves
  // the delivery callbacks until then.
  while (batch.delivered + batch.failed < produced) rd_kafka_flush(s.rk, 1000);
  if (batch.failed > 0) {
    s.check_fatal();
    throw SinkError("kafka: " + std::to_string(batch.failed.load()) + " of " + std::to_string(produced) +
                    " messages not acknowledged (" + batch.first_error + ")");
  }
  s.acknowledged += produced;
}

}  // namespace chainidx::sinks
