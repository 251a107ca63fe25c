// Types of pgflow-core-worker (index.js).
import type { ClientConfig } from "pg";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** What a handler knows about its task besides its input. */
export interface Context {
  flowSlug: string;
  runId: string;
  stepSlug: string;
  taskIndex: number;
  msgId: number;
  workerId: string;
  /** The run's input (read once with pgflow.run_input when the engine does not send it). */
  flowInput(): Promise<Json>;
  /** True once the worker is stopping: long handlers may finish early. */
  stopping(): boolean;
}

/**
 * A step's handler. `input` is the run's input for a root step, `{ depSlug: output }` for a
 * dependent step, the element for a map step. What it returns (or resolves to) is the task's
 * output; what it throws fails the attempt.
 */
export type Handler<I = any, O = Json> = (input: I, ctx: Context) => O | Promise<O>;

export interface Options {
  /** pgflow.workers.function_name and the connections' application_name. Default "node-worker". */
  name?: string;
  /** Tasks run at once, across flows (each flow reads at most its share). Default 10. */
  maxConcurrency?: number;
  /** Seconds a read message stays hidden. Default 30. */
  visibilityTimeout?: number;
  /** How long one read_with_poll waits. Default 5. */
  maxPollSeconds?: number;
  /** read_with_poll's interval (a send wakes it sooner). Default 100. */
  pollIntervalMs?: number;
  /** Between heartbeats into pgflow.workers. Default 5. */
  heartbeatSeconds?: number;
  /** Seconds started tasks get to finish on stop; the rest are released. Default 30. */
  shutdownTimeout?: number;
  /** Warnings (lost connections, failed acknowledgements) on console.warn. Default true. */
  log?: boolean;
}

export class Worker {
  constructor(connection: ClientConfig | string, options?: Options);
  /** Registers handler(input, ctx) for one step of one flow. */
  step<I = any, O = Json>(flowSlug: string, stepSlug: string, handler: Handler<I, O>): this;
  /** Registers the worker and starts polling. */
  start(): Promise<void>;
  /** start(), then stop() on SIGTERM or SIGINT; resolves once stopped. */
  run(): Promise<void>;
  /** Graceful stop: no new reads, started tasks finish or are released, workers marked stopped. */
  stop(): Promise<void>;
  readonly workerIds: Map<string, string>;
  readonly completed: number;
  readonly failed: number;
  readonly released: number;
}
