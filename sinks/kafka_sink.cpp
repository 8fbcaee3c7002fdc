#include "sinks/kafka_sink.hpp"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <utility>

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
  // The newest block a committed transaction holds in <chain>.blocks: blocks up to it are not
  // published again (after a crash between Kafka's commit and Postgres').
  std::optional<std::pair<std::uint64_t, schema::Hash32>> published_tip;

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
    // One transaction per batch: a batch's messages become visible to read_committed consumers
    // together or not at all, and a restarted indexer fences the producer of the old one.
    set("transactional.id", "chainidx-" + config.chain_name);
    set("transaction.timeout.ms", std::to_string(config.delivery_timeout_ms + 30000));
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) throw SinkError(std::string("kafka producer: ") + err);
    if (rd_kafka_error_t* e = rd_kafka_init_transactions(rk, 30000)) {
      std::string msg = rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
      rd_kafka_destroy(rk);
      rk = nullptr;
      throw SinkError("kafka init transactions at " + config.brokers + ": " + msg);
    }
  }

  // A failed transactional call: abort what can be aborted, start over where librdkafka says the
  // producer is finished, and report the batch as not stored.
  [[noreturn]] void transaction_failed(rd_kafka_error_t* e, const char* what) {
    std::string msg = std::string("kafka ") + what + ": " + rd_kafka_error_string(e);
    bool fatal = rd_kafka_error_is_fatal(e);
    bool abort = rd_kafka_error_txn_requires_abort(e);
    rd_kafka_error_destroy(e);
    if (fatal) {
      disconnect();
      connect();
      throw SinkError(msg + " (producer recreated)");
    }
    if (abort) {
      if (rd_kafka_error_t* a = rd_kafka_abort_transaction(rk, config.delivery_timeout_ms)) rd_kafka_error_destroy(a);
    }
    throw SinkError(msg);
  }

  void disconnect() {
    if (rk) {
      rd_kafka_destroy(rk);
      rk = nullptr;
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
  // Leave out what an earlier run committed to Kafka but not to Postgres before it died.
  std::size_t first = 0;
  if (s.published_tip) {
    while (first < blocks.size() && blocks[first].number <= s.published_tip->first) {
      if (blocks[first].number == s.published_tip->first && blocks[first].hash != s.published_tip->second) {
        spdlog::warn("event=kafka_tip_not_canonical block={} published_hash={} canonical_hash={}", blocks[first].number,
                     schema::to_hex(s.published_tip->second), schema::to_hex(blocks[first].hash));
        first = 0;
        break;
      }
      ++first;
    }
    if (first > 0)
      spdlog::info("event=kafka_skip_published blocks={}-{} reason=\"committed to Kafka by an earlier run\"",
                   blocks.front().number, blocks[first - 1].number);
  }
  if (first == blocks.size()) return;

  if (rd_kafka_error_t* e = rd_kafka_begin_transaction(s.rk)) s.transaction_failed(e, "begin transaction");
  BatchState batch;
  std::uint64_t produced = 0;
  for (const auto& block : blocks.subspan(first)) {
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
          // Queued messages still report into `batch`, which must outlive them: abort waits.
          if (rd_kafka_error_t* a = rd_kafka_abort_transaction(s.rk, s.config.delivery_timeout_ms)) rd_kafka_error_destroy(a);
          rd_kafka_flush(s.rk, 1000);
          throw SinkError(std::string("kafka produce: ") + rd_kafka_err2str(e));
        }
        rd_kafka_poll(s.rk, 50);
      }
      ++produced;
    }
  }
  // Commit flushes: it returns once every message is acknowledged and the transaction is
  // committed, or with the reason it could not be.
  if (rd_kafka_error_t* e = rd_kafka_commit_transaction(s.rk, s.config.delivery_timeout_ms + 5000)) {
    rd_kafka_flush(s.rk, 1000);
    s.transaction_failed(e, "commit transaction");
  }
  s.published_tip = std::make_pair(blocks.back().number, blocks.back().hash);
  s.acknowledged += produced;
}

namespace {

// The newest block in a committed transaction on `topic`: each partition's tail is read with
// read_committed, widening the window backwards until a block message turns up.
std::optional<std::pair<std::uint64_t, schema::Hash32>> read_published_tip(const KafkaSinkConfig& config,
                                                                           const std::string& topic) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (auto [k, v] : {std::pair<const char*, std::string>{"bootstrap.servers", config.brokers},
                      {"group.id", "chainidx-tip-" + config.chain_name},
                      {"enable.auto.commit", "false"},
                      {"isolation.level", "read_committed"},
                      {"enable.partition.eof", "true"},
                      {"log_level", "4"}}) {
    if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      throw SinkError(std::string("kafka consumer config ") + k + ": " + err);
    }
  }
  rd_kafka_conf_set_log_cb(conf, on_log);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) throw SinkError(std::string("kafka consumer: ") + err);
  rd_kafka_poll_set_consumer(rk);
  std::optional<std::pair<std::uint64_t, schema::Hash32>> tip;
  std::string problem;

  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  int partitions = 0;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1)
    partitions = md->topics[0].partition_cnt;
  else
    problem = "no metadata for " + topic;
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);

  for (int p = 0; p < partitions && problem.empty(); ++p) {
    std::int64_t low = 0, high = 0;
    if (auto e = rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 10000)) {
      problem = std::string("watermarks: ") + rd_kafka_err2str(e);
      break;
    }
    bool found = false;
    for (std::int64_t window = 16; high > low && !found; window *= 4) {
      std::int64_t start = std::max(low, high - window);
      rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = start;
      rd_kafka_assign(rk, list);
      rd_kafka_topic_partition_list_destroy(list);
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
      for (;;) {
        if (std::chrono::steady_clock::now() > deadline) {
          problem = "timed out reading the tail of " + topic;
          break;
        }
        rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 500);
        if (!m) continue;
        bool eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
        if (!m->err) {
          std::string_view value(static_cast<const char*>(m->payload), m->len);
          auto n_at = value.find("\"block_number\":");
          auto h_at = value.find("\"block_hash\":\"");
          schema::Hash32 hash;
          if (n_at != std::string_view::npos && h_at != std::string_view::npos &&
              schema::parse_fixed(value.substr(h_at + 14, 66), hash)) {
            std::uint64_t number = std::strtoull(value.data() + n_at + 15, nullptr, 10);
            if (!tip || number > tip->first) tip = std::make_pair(number, hash);
            found = true;
          }
        } else if (!eof) {
          problem = std::string("reading ") + topic + ": " + rd_kafka_err2str(m->err);
        }
        rd_kafka_message_destroy(m);
        if (eof || !problem.empty()) break;
      }
      if (!problem.empty() || start == low) break;
    }
  }
  rd_kafka_assign(rk, nullptr);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (!problem.empty()) throw SinkError("kafka: " + problem);
  return tip;
}

}  // namespace

void KafkaSink::load_published_tip() {
  impl_->published_tip = read_published_tip(impl_->config, impl_->topics[static_cast<int>(Topic::kBlocks)]);
  if (impl_->published_tip)
    spdlog::info("event=kafka_published_tip block={} hash={}", impl_->published_tip->first,
                 schema::to_hex(impl_->published_tip->second));
}

}  // namespace chainidx::sinks
