// Shared helpers for the test files: connections, one Worker per file, history inspection.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test as nodeTest } from 'node:test';
import { Client, Connection, WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { DefaultLogger, NativeConnection, Runtime, Worker, WorkerOptions } from '@temporalio/worker';

export const ADDRESS = process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
export const NAMESPACE = process.env.TEMPORAL_NAMESPACE ?? 'default';

/** Per-test deadline: a hang fails one test instead of stalling the run. */
export const TEST_TIMEOUT = Number(process.env.TS_TEST_TIMEOUT_MS ?? 60_000);

/**
 * node:test's `test` with a deadline that counts as a failure: node's own `timeout` option
 * reports a timed-out test as "cancelled", which the closing `# fail N` line leaves out.
 * node's timeout stays as a backstop. Every test file uses this `test`, none node's own.
 */
export function test(name: string, fn: () => Promise<void>): void {
  nodeTest(name, { timeout: TEST_TIMEOUT + 15_000 }, async () => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`TIMEOUT: test "${name}" did not finish within ${TEST_TIMEOUT} ms (TS_TEST_TIMEOUT_MS)`)),
            TEST_TIMEOUT,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  });
}

export type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
export const EventType = temporal.api.enums.v1.EventType;
export const TimeoutType = temporal.api.enums.v1.TimeoutType;
export const RetryState = temporal.api.enums.v1.RetryState;

/** A name unique to this run, safe to use as workflow id, task queue or schedule id. */
export function uid(prefix: string): string {
  return `${prefix}-${randomUUID()}`;
}

let runtimeInstalled = false;
function installRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  // Keep the worker quiet unless something is really wrong; test output stays readable.
  Runtime.install({
    logger: new DefaultLogger((process.env.TS_WORKER_LOG_LEVEL as any) ?? 'ERROR'),
    telemetryOptions: { logging: { forward: {}, filter: { core: 'ERROR', other: 'ERROR' } } },
  });
}

export async function connectClient(options: { queryRejectCondition?: 'NONE' | 'NOT_OPEN' | 'NOT_COMPLETED_CLEANLY' } = {}): Promise<{ client: Client; connection: Connection }> {
  const connection = await Connection.connect({ address: ADDRESS });
  const client = new Client({
    connection,
    namespace: NAMESPACE,
    workflow: options.queryRejectCondition ? { queryRejectCondition: options.queryRejectCondition } : undefined,
  });
  return { client, connection };
}

export interface RunningWorker {
  worker: Worker;
  connection: NativeConnection;
  taskQueue: string;
  stop(): Promise<void>;
}

/**
 * Start a Worker on its own NativeConnection and run it in the background until stop().
 * `connection` may be given to share one NativeConnection with a Client (eager start).
 */
export async function startWorker(
  options: Omit<WorkerOptions, 'connection' | 'namespace'> & { connection?: NativeConnection },
): Promise<RunningWorker> {
  installRuntime();
  const ownConnection = !options.connection;
  const connection = options.connection ?? (await NativeConnection.connect({ address: ADDRESS }));
  const worker = await Worker.create({ shutdownGraceTime: '1s', ...options, connection, namespace: NAMESPACE });
  const running = worker.run();
  running.catch(() => undefined); // surfaced by stop()
  return {
    worker,
    connection,
    taskQueue: options.taskQueue,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      try {
        await running;
      } finally {
        if (ownConnection) await connection.close();
      }
    },
  };
}

/** "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" -> "ActivityTaskScheduled" */
export function eventName(event: HistoryEvent): string {
  const raw = EventType[event.eventType ?? 0] ?? `Unknown(${event.eventType})`;
  return raw
    .replace(/^EVENT_TYPE_/, '')
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}

export async function historyEvents(handle: WorkflowHandle): Promise<HistoryEvent[]> {
  const history = await handle.fetchHistory();
  return history.events ?? [];
}

export async function eventNames(handle: WorkflowHandle): Promise<string[]> {
  return (await historyEvents(handle)).map(eventName);
}

export function eventsNamed(events: HistoryEvent[], name: string): HistoryEvent[] {
  return events.filter((e) => eventName(e) === name);
}

export function countOf(names: string[], name: string): number {
  return names.filter((n) => n === name).length;
}

/** True when `wanted` appears in `actual` in order (not necessarily adjacent). */
export function isSubsequence(wanted: string[], actual: string[]): boolean {
  let i = 0;
  for (const name of actual) {
    if (i < wanted.length && name === wanted[i]) i++;
  }
  return i === wanted.length;
}

export function assertSubsequence(wanted: string[], actual: string[]): void {
  assert.ok(isSubsequence(wanted, actual), `expected events in order ${JSON.stringify(wanted)}\nin history ${JSON.stringify(actual)}`);
}

/** Workflow-task events are bookkeeping; most assertions look at the rest. */
export function withoutWorkflowTasks(names: string[]): string[] {
  return names.filter((n) => !n.startsWith('WorkflowTask'));
}

/** google.protobuf.Duration -> milliseconds */
export function durationMs(d: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  if (!d) return 0;
  return Number(d.seconds ?? 0) * 1000 + Math.round((d.nanos ?? 0) / 1e6);
}

/** Timestamp -> epoch ms */
export function timestampMs(t: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  return durationMs(t);
}

export async function waitUntil<R>(
  what: string,
  check: () => Promise<R | undefined | null | false> | R | undefined | null | false,
  timeoutMs = 15_000,
  intervalMs = 100,
): Promise<R> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as R;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` + (lastError ? `; last error: ${lastError}` : ''));
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export async function waitForEvent(handle: WorkflowHandle, name: string, count = 1, timeoutMs = 15_000): Promise<HistoryEvent[]> {
  return waitUntil(`${count} x ${name} in ${handle.workflowId}`, async () => {
    const found = eventsNamed(await historyEvents(handle), name);
    return found.length >= count ? found : undefined;
  }, timeoutMs);
}

export async function terminateQuietly(handle: WorkflowHandle): Promise<void> {
  try {
    await handle.terminate('test cleanup');
  } catch {
    // already closed
  }
}

export async function listIds(client: Client, query: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const wf of client.workflow.list({ query })) ids.push(wf.workflowId);
  return ids.sort();
}

/** Visibility may lag behind workflow state: poll until the listing equals `expected`. */
export async function listIdsEventually(client: Client, query: string, expected: string[], timeoutMs = 15_000): Promise<void> {
  const want = [...expected].sort();
  let last: string[] = [];
  try {
    await waitUntil(`listing ${query}`, async () => {
      last = await listIds(client, query);
      return JSON.stringify(last) === JSON.stringify(want);
    }, timeoutMs, 250);
  } catch {
    assert.deepEqual(last, want, `list(${query})`);
  }
}

/** Options for before/after hooks: a server that never answers fails the hook, not the run. */
export const HOOK = { timeout: 120_000 };

/**
 * Runs each cleanup step with a deadline, then makes sure the test process ends even if a
 * stuck worker or connection still holds the event loop (node --test would wait forever).
 */
export async function shutdown(...steps: (() => Promise<unknown> | undefined)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        step(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('cleanup step did not finish within 20 s')), 20_000);
        }),
      ]);
    } catch (err) {
      errors.push(err);
    } finally {
      clearTimeout(timer);
    }
  }
  setTimeout(() => process.exit(), 5_000).unref();
  if (errors.length) throw errors[0];
}
