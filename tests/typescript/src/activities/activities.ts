// Activities for activities.test.ts. They run in the test process (the Worker runs activities
// in the main thread), so the test can read what they record in `journal`.
import { activityInfo, ApplicationFailure, CancelledFailure, heartbeat, sleep } from '@temporalio/activity';

export interface Entry {
  what: string;
  at: number;
  attempt: number;
  detail?: unknown;
}

/** key -> what the activity saw, in order */
export const journal = new Map<string, Entry[]>();

function note(key: string, what: string, detail?: unknown): void {
  const list = journal.get(key) ?? [];
  list.push({ what, at: Date.now(), attempt: activityInfo().attempt, detail });
  journal.set(key, list);
}

export interface SelfDescription {
  attempt: number;
  activityType: string;
  taskQueue: string;
  scheduleToCloseTimeoutMs: number;
  startToCloseTimeoutMs: number;
  heartbeatTimeoutMs: number | undefined;
}

/** Returns what the worker was told about this activity task. */
export async function describeSelf(): Promise<SelfDescription> {
  const info = activityInfo();
  if (info.heartbeatTimeoutMs) heartbeat('alive');
  return {
    attempt: info.attempt,
    activityType: info.activityType,
    taskQueue: info.taskQueue,
    scheduleToCloseTimeoutMs: info.scheduleToCloseTimeoutMs,
    startToCloseTimeoutMs: info.startToCloseTimeoutMs,
    heartbeatTimeoutMs: info.heartbeatTimeoutMs,
  };
}

export async function echo(value: string): Promise<string> {
  return value;
}

/** Sleeps (cancellably) for `ms`. */
export async function sleepFor(key: string, ms: number): Promise<string> {
  note(key, 'start');
  await sleep(ms);
  note(key, 'end');
  return 'slept';
}

/** Fails with a retryable ApplicationFailure until attempt `succeedOn`. */
export async function failUntil(key: string, succeedOn: number): Promise<number> {
  note(key, 'attempt');
  const { attempt } = activityInfo();
  if (attempt < succeedOn) {
    throw ApplicationFailure.retryable(`attempt ${attempt} fails`, 'Flaky');
  }
  return attempt;
}

/** Always fails with an ApplicationFailure of the given type. */
export async function alwaysFail(key: string, type: string): Promise<never> {
  note(key, 'attempt');
  throw ApplicationFailure.retryable(`failure of type ${type}`, type);
}

/**
 * Attempt 1 heartbeats once with 'progress-1' and then stalls without heartbeating, so the
 * heartbeat timeout fires. Later attempts return the heartbeat details they were given.
 */
export async function heartbeatThenStall(key: string, stallMs: number): Promise<{ attempt: number; details: unknown }> {
  const info = activityInfo();
  note(key, 'start', info.heartbeatDetails);
  if (info.attempt === 1) {
    heartbeat('progress-1');
    try {
      await sleep(stallMs);
    } catch {
      // cancelled by the worker after the timeout: nothing to do
    }
    return { attempt: info.attempt, details: 'stalled' };
  }
  return { attempt: info.attempt, details: info.heartbeatDetails };
}

/** Heartbeats every 100 ms until cancelled; records the cancellation and rethrows it. */
export async function heartbeatUntilCancelled(key: string): Promise<string> {
  note(key, 'start');
  for (let i = 0; i < 600; i++) {
    heartbeat(i);
    try {
      await sleep(100);
    } catch (err) {
      if (err instanceof CancelledFailure) {
        note(key, 'cancelled', err.message);
        throw err;
      }
      throw err;
    }
  }
  return 'never cancelled';
}

/**
 * One of `count` activities that meet: each records its start, then waits until all `count`
 * have started before it ends. Run one after another, the first would wait for the others
 * forever; it gives up after `maxWaitMs` and fails (no retries), so the workflow says so.
 */
export async function meetAll(key: string, index: number, count: number, maxWaitMs: number): Promise<number> {
  note(key, 'start', index);
  const deadline = Date.now() + maxWaitMs;
  const started = () => (journal.get(key) ?? []).filter((e) => e.what === 'start').length;
  while (started() < count) {
    if (Date.now() > deadline) {
      throw ApplicationFailure.nonRetryable(`activity ${index}: only ${started()} of ${count} had started after ${maxWaitMs} ms`, 'NotConcurrent');
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  note(key, 'end', started());
  return index * 10;
}
