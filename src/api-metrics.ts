// The API's Prometheus metrics: requests by route and status, their latency, and per answer (query, chat
// completions) retrieval time, time to first token, total time and answer-cache hits. Registered on the
// process's MetricsRegistry (several apps in one process share the same series).
import { Counter, Histogram, type MetricsRegistry } from './metrics.ts';

export interface AnswerObservation {
  /** The answer route's path (/query, /chat/completions). */
  route: string;
  cachedAnswer: boolean;
  retrievalMs: number;
  ttftMs: number;
  totalMs: number;
}

export class ApiMetrics {
  private readonly requests: Counter;
  private readonly duration: Histogram;
  private readonly retrieval: Histogram;
  private readonly ttft: Histogram;
  private readonly answer: Histogram;
  private readonly cache: Counter;

  constructor(reg: MetricsRegistry) {
    this.requests = reg.add(
      new Counter('kvrag_api_requests_total', 'HTTP requests by method, matched route and status.'),
    );
    this.duration = reg.add(
      new Histogram(
        'kvrag_api_request_duration_seconds',
        'Time from request to response head (streamed answers: to the start of the stream), by route.',
      ),
    );
    this.retrieval = reg.add(
      new Histogram('kvrag_api_retrieval_seconds', 'Hybrid retrieval time of an answer, by answer route.'),
    );
    this.ttft = reg.add(
      new Histogram('kvrag_api_answer_ttft_seconds', 'Request to first answer token, by answer route.'),
    );
    this.answer = reg.add(
      new Histogram(
        'kvrag_api_answer_seconds',
        'Request to the end of the answer, by answer route and whether it came from the answer cache.',
      ),
    );
    this.cache = reg.add(
      new Counter(
        'kvrag_api_answer_cache_total',
        'Answers by answer route and answer-cache result (hit, miss).',
      ),
    );
  }

  request(method: string, route: string, status: number, seconds: number): void {
    const labels = { method, route, status: String(status) };
    this.requests.inc(labels);
    this.duration.observe(labels, seconds);
  }

  answered(o: AnswerObservation): void {
    this.retrieval.observe({ route: o.route }, o.retrievalMs / 1000);
    this.ttft.observe({ route: o.route }, o.ttftMs / 1000);
    this.answer.observe({ route: o.route, cached: String(o.cachedAnswer) }, o.totalMs / 1000);
    this.cache.inc({ route: o.route, result: o.cachedAnswer ? 'hit' : 'miss' });
  }
}
