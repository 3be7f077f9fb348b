// The fake libcuda's streams, events and CUDA graphs. Streams are synchronous: work runs as it
// is queued, unless its stream is being captured, when it is recorded for the graph instead; an
// event's timestamp is the host time the stream reached it. Calls that a capture does not allow
// invalidate it, as the driver does.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "fake_state.h"

namespace {

using namespace kiln_fake::cu;
using kiln_fake::fail;

struct Graph {
  std::vector<std::function<int()>> ops;
};

std::set<uint64_t> streams, events;
std::map<uint64_t, std::chrono::steady_clock::time_point> eventTimes;
std::map<uint64_t, std::shared_ptr<Graph>> graphs, execs;
uint64_t capturing = 0;  // the stream being captured, 0 when none
bool captureBroken = false;
std::vector<std::function<int()>> captured;

}  // namespace

namespace kiln_fake {

bool validStream(uint64_t s) { return s == 0 || streams.count(s) > 0; }

bool isCapturing() { return capturing != 0; }

int hostCopyAllowed() {
  if (capturing == 0) return kSuccess;
  captureBroken = true;
  return fail(kCaptureUnsupported, "a synchronous host copy while a stream is being captured");
}

int enqueue(uint64_t stream, const std::function<int()>& op) {
  if (!validStream(stream)) return fail(kInvalidHandle, "unknown stream");
  if (capturing != 0 && stream == capturing) {
    captured.push_back(op);
    return kSuccess;
  }
  return op();
}

}  // namespace kiln_fake

using kiln_fake::enqueue;
using kiln_fake::ready;
using kiln_fake::validStream;

extern "C" {

int cuStreamCreate(uint64_t* stream, unsigned int) {
  if (int r = ready()) return r;
  *stream = kiln_fake::newHandle();
  streams.insert(*stream);
  return kSuccess;
}

int cuStreamDestroy_v2(uint64_t stream) {
  if (streams.erase(stream) == 0) return fail(kInvalidHandle, "unknown stream");
  return kSuccess;
}

int cuStreamSynchronize(uint64_t stream) {
  if (int r = ready()) return r;
  if (!validStream(stream)) return fail(kInvalidHandle, "unknown stream");
  if (capturing != 0 && stream == capturing) return fail(kCaptureUnsupported, "synchronising a capturing stream");
  return kSuccess;
}

int cuEventCreate(uint64_t* event, unsigned int) {
  if (int r = ready()) return r;
  *event = kiln_fake::newHandle();
  events.insert(*event);
  return kSuccess;
}

int cuEventRecord(uint64_t event, uint64_t stream) {
  if (!events.count(event)) return fail(kInvalidHandle, "unknown event");
  return enqueue(stream, [event] {
    eventTimes[event] = std::chrono::steady_clock::now();
    return kSuccess;
  });
}

int cuEventElapsedTime(float* ms, uint64_t start, uint64_t end) {
  if (!events.count(start) || !events.count(end)) return fail(kInvalidHandle, "unknown event");
  const auto a = eventTimes.find(start), b = eventTimes.find(end);
  if (a == eventTimes.end() || b == eventTimes.end()) return fail(kInvalidValue, "CUDA_ERROR_NOT_READY: an event was never recorded");
  *ms = std::chrono::duration<float, std::milli>(b->second - a->second).count();
  return kSuccess;
}

int cuEventSynchronize(uint64_t event) { return events.count(event) ? kSuccess : fail(kInvalidHandle, "unknown event"); }

int cuEventDestroy_v2(uint64_t event) {
  eventTimes.erase(event);
  return events.erase(event) ? kSuccess : fail(kInvalidHandle, "unknown event");
}

int cuStreamBeginCapture_v2(uint64_t stream, int mode) {
  if (int r = ready()) return r;
  if (stream == 0 || !streams.count(stream)) return fail(kCaptureUnsupported, "only created streams can be captured");
  if (mode < 0 || mode > 2) return fail(kInvalidValue, "capture mode");
  if (capturing != 0) return fail(kInvalidValue, "a capture is already in progress");
  capturing = stream;
  captureBroken = false;
  captured.clear();
  return kSuccess;
}

int cuStreamEndCapture(uint64_t stream, uint64_t* graph) {
  if (capturing == 0 || stream != capturing) return fail(kInvalidValue, "the stream is not being captured");
  capturing = 0;
  if (captureBroken) {
    *graph = 0;
    return fail(kCaptureInvalidated, "the capture was invalidated by an unsupported call");
  }
  auto g = std::make_shared<Graph>();
  g->ops.swap(captured);
  *graph = kiln_fake::newHandle();
  graphs[*graph] = g;
  return kSuccess;
}

int cuGraphInstantiateWithFlags(uint64_t* exec, uint64_t graph, unsigned long long) {
  auto g = graphs.find(graph);
  if (g == graphs.end()) return fail(kInvalidHandle, "unknown graph");
  *exec = kiln_fake::newHandle();
  execs[*exec] = std::make_shared<Graph>(*g->second);
  return kSuccess;
}

int cuGraphLaunch(uint64_t exec, uint64_t stream) {
  auto e = execs.find(exec);
  if (e == execs.end()) return fail(kInvalidHandle, "unknown graph exec");
  if (!validStream(stream)) return fail(kInvalidHandle, "unknown stream");
  for (auto& op : e->second->ops) {
    if (int r = op()) return r;
  }
  return kSuccess;
}

int cuGraphExecDestroy(uint64_t exec) { return execs.erase(exec) ? kSuccess : fail(kInvalidHandle, "unknown graph exec"); }

int cuGraphDestroy(uint64_t graph) { return graphs.erase(graph) ? kSuccess : fail(kInvalidHandle, "unknown graph"); }

}  // extern "C"
