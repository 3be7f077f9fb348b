/**
 * Prometheus metrics with vLLM's names where one exists (counters carry the `_total` suffix that
 * vLLM's Python client adds), in a registry of the server's own
 * (no process-global state). Gauges are sampled from the engine when /metrics is scraped;
 * counters and histograms are fed as requests progress.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const TOKEN_LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];

/** What the engine reports at scrape time. */
export interface EngineGauges {
  readonly running: number;
  readonly waiting: number;
  /** fraction of KV blocks in use, 0..1 */
  readonly kvCacheUsage: number;
}

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly labels: { model_name: string };
  readonly running: Gauge;
  readonly waiting: Gauge;
  readonly kvUsage: Gauge;
  readonly prefixQueries: Counter;
  readonly prefixHits: Counter;
  readonly preemptions: Counter;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  readonly ttft: Histogram;
  readonly itl: Histogram;
  readonly e2e: Histogram;
  readonly queueTime: Histogram;
  readonly success: Counter;

  constructor(modelName: string, sample: () => EngineGauges) {
    this.labels = { model_name: modelName };
    const r = [this.registry];
    const labelNames = ["model_name"] as const;
    this.running = new Gauge({
      name: "vllm:num_requests_running",
      help: "Requests in the running batch.",
      labelNames,
      registers: r,
      collect: () => {
        this.running.set(this.labels, sample().running);
      },
    });
    this.waiting = new Gauge({
      name: "vllm:num_requests_waiting",
      help: "Requests waiting to be scheduled.",
      labelNames,
      registers: r,
      collect: () => {
        this.waiting.set(this.labels, sample().waiting);
      },
    });
    this.kvUsage = new Gauge({
      name: "vllm:kv_cache_usage_perc",
      help: "Fraction of KV-cache blocks in use (1 = full).",
      labelNames,
      registers: r,
      collect: () => {
        this.kvUsage.set(this.labels, sample().kvCacheUsage);
      },
    });
    const counter = (name: string, help: string): Counter => new Counter({ name, help, labelNames, registers: r });
    this.prefixQueries = counter("vllm:prefix_cache_queries_total", "Tokens looked up in the prefix cache.");
    this.prefixHits = counter("vllm:prefix_cache_hits_total", "Tokens found in the prefix cache.");
    this.preemptions = counter("vllm:num_preemptions_total", "Requests preempted (recomputed later).");
    this.promptTokens = counter("vllm:prompt_tokens_total", "Prompt tokens processed.");
    this.generationTokens = counter("vllm:generation_tokens_total", "Tokens generated.");
    const histogram = (name: string, help: string, buckets: number[]): Histogram =>
      new Histogram({ name, help, labelNames, buckets, registers: r });
    this.ttft = histogram("vllm:time_to_first_token_seconds", "Time to first token.", LATENCY_BUCKETS);
    this.itl = histogram("vllm:inter_token_latency_seconds", "Time between consecutive output tokens.", TOKEN_LATENCY_BUCKETS);
    this.e2e = histogram("vllm:e2e_request_latency_seconds", "Request latency from arrival to finish.", LATENCY_BUCKETS);
    this.queueTime = histogram("vllm:request_queue_time_seconds", "Time spent waiting before first scheduled.", LATENCY_BUCKETS);
    this.success = new Counter({
      name: "vllm:request_success_total",
      help: "Finished requests by finish reason.",
      labelNames: ["model_name", "finished_reason"],
      registers: r,
    });
  }

  get modelLabel(): { model_name: string } {
    return this.labels;
  }
}
