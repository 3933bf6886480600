// Guide: activities — timeouts (each alone and all four), retries with backoff, heartbeats and
// heartbeat timeout, activity cancellation, parallel activities.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import * as activities from '../activities/activities';
import * as wf from '../workflows/activities';
import {
  assertSubsequence,
  connectClient,
  countOf,
  durationMs,
  eventName,
  eventNames,
  eventsNamed,
  historyEvents,
  RetryState,
  RunningWorker,
  startWorker,
  test,
  TimeoutType,
  uid,
  waitUntil,
  withoutWorkflowTasks,
  HOOK,
  shutdown,
} from '../support';

const taskQueue = uid('ts-activities');
let client: Client;
let connection: Connection;
let worker: RunningWorker;

before(async () => {
  ({ client, connection } = await connectClient());
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/activities'), activities });
}, HOOK);

after(() => shutdown(() => worker?.stop(), () => connection?.close()), HOOK);

function scheduledAttributes(events: Awaited<ReturnType<typeof historyEvents>>) {
  const scheduled = eventsNamed(events, 'ActivityTaskScheduled');
  assert.equal(scheduled.length, 1, 'one ActivityTaskScheduled');
  return scheduled[0].activityTaskScheduledEventAttributes!;
}

// ------------------------------------------------------------------ timeouts, one at a time

test('activity with only startToCloseTimeout runs and completes', async () => {
  const handle = await client.workflow.start(wf.startToCloseOnly, { taskQueue, workflowId: uid('stc-only') });
  const info = await handle.result();
  assert.equal(info.attempt, 1);
  assert.equal(info.activityType, 'describeSelf');
  assert.equal(info.taskQueue, taskQueue);
  assert.equal(info.startToCloseTimeoutMs, 7000);
  assert.equal(info.scheduleToCloseTimeoutMs, 0, 'no schedule-to-close timeout: 0 means unlimited');
  assert.ok(!info.heartbeatTimeoutMs, 'no heartbeat timeout');

  const events = await historyEvents(handle);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'ActivityTaskScheduled',
    'ActivityTaskStarted',
    'ActivityTaskCompleted',
    'WorkflowExecutionCompleted',
  ]);
  const attrs = scheduledAttributes(events);
  assert.equal(durationMs(attrs.startToCloseTimeout), 7000);
  assert.equal(durationMs(attrs.scheduleToCloseTimeout), 0);
  assert.equal(durationMs(attrs.scheduleToStartTimeout), 0);
  assert.equal(durationMs(attrs.heartbeatTimeout), 0);
  // The server fills in the default retry policy.
  assert.equal(durationMs(attrs.retryPolicy?.initialInterval), 1000);
  assert.equal(attrs.retryPolicy?.backoffCoefficient, 2);
  assert.equal(durationMs(attrs.retryPolicy?.maximumInterval), 100_000);
  assert.equal(attrs.retryPolicy?.maximumAttempts ?? 0, 0);
});

test('activity with only scheduleToCloseTimeout runs and completes', async () => {
  const handle = await client.workflow.start(wf.scheduleToCloseOnly, { taskQueue, workflowId: uid('s2c-only') });
  const info = await handle.result();
  assert.equal(info.attempt, 1);
  assert.equal(info.scheduleToCloseTimeoutMs, 8000);
  // The server caps start-to-close by schedule-to-close.
  assert.equal(info.startToCloseTimeoutMs, 8000);

  const events = await historyEvents(handle);
  assert.equal(countOf(events.map(eventName), 'ActivityTaskCompleted'), 1);
  const attrs = scheduledAttributes(events);
  assert.equal(durationMs(attrs.scheduleToCloseTimeout), 8000);
  assert.equal(durationMs(attrs.startToCloseTimeout), 8000);
  assert.equal(durationMs(attrs.scheduleToStartTimeout), 8000);
});

test('activity with all four timeouts runs and completes', async () => {
  const handle = await client.workflow.start(wf.allFourTimeouts, { taskQueue, workflowId: uid('all-four') });
  const info = await handle.result();
  assert.equal(info.scheduleToCloseTimeoutMs, 20_000);
  assert.equal(info.startToCloseTimeoutMs, 9000);
  assert.equal(info.heartbeatTimeoutMs, 3000);

  const events = await historyEvents(handle);
  assert.equal(countOf(events.map(eventName), 'ActivityTaskCompleted'), 1);
  const attrs = scheduledAttributes(events);
  assert.equal(durationMs(attrs.scheduleToCloseTimeout), 20_000);
  assert.equal(durationMs(attrs.scheduleToStartTimeout), 10_000);
  assert.equal(durationMs(attrs.startToCloseTimeout), 9000);
  assert.equal(durationMs(attrs.heartbeatTimeout), 3000);
});

test('startToCloseTimeout fires: ActivityTaskTimedOut with START_TO_CLOSE', async () => {
  const handle = await client.workflow.start(wf.startToCloseTimesOut, { taskQueue, workflowId: uid('stc-fires'), args: [uid('k')] });
  const failure = await handle.result();
  assert.equal(failure.name, 'ActivityFailure');
  assert.equal(failure.activityType, 'sleepFor');
  assert.equal(failure.retryState, 'MAXIMUM_ATTEMPTS_REACHED');
  assert.equal(failure.cause?.name, 'TimeoutFailure');
  assert.equal(failure.cause?.timeoutType, 'START_TO_CLOSE');

  const events = await historyEvents(handle);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'ActivityTaskScheduled',
    'ActivityTaskStarted',
    'ActivityTaskTimedOut',
    'WorkflowExecutionCompleted',
  ]);
  const timedOut = eventsNamed(events, 'ActivityTaskTimedOut')[0].activityTaskTimedOutEventAttributes!;
  assert.equal(timedOut.failure?.timeoutFailureInfo?.timeoutType, TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE);
  assert.equal(timedOut.retryState, RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED);
});

test('scheduleToCloseTimeout fires: ActivityTaskTimedOut with SCHEDULE_TO_CLOSE', async () => {
  const handle = await client.workflow.start(wf.scheduleToCloseTimesOut, { taskQueue, workflowId: uid('s2c-fires'), args: [uid('k')] });
  const failure = await handle.result();
  assert.equal(failure.name, 'ActivityFailure');
  assert.equal(failure.cause?.name, 'TimeoutFailure');
  assert.equal(failure.cause?.timeoutType, 'SCHEDULE_TO_CLOSE');

  const events = await historyEvents(handle);
  assertSubsequence(['ActivityTaskScheduled', 'ActivityTaskStarted', 'ActivityTaskTimedOut', 'WorkflowExecutionCompleted'], events.map(eventName));
  const timedOut = eventsNamed(events, 'ActivityTaskTimedOut')[0].activityTaskTimedOutEventAttributes!;
  assert.equal(timedOut.failure?.timeoutFailureInfo?.timeoutType, TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE);
});

test('scheduleToStartTimeout fires when no worker polls the queue', async () => {
  const handle = await client.workflow.start(wf.scheduleToStartTimesOut, {
    taskQueue,
    workflowId: uid('s2s-fires'),
    args: [uid('ts-idle-queue')],
  });
  const failure = await handle.result();
  assert.equal(failure.name, 'ActivityFailure');
  assert.equal(failure.cause?.name, 'TimeoutFailure');
  assert.equal(failure.cause?.timeoutType, 'SCHEDULE_TO_START');

  const names = await eventNames(handle);
  assert.deepEqual(withoutWorkflowTasks(names), [
    'WorkflowExecutionStarted',
    'ActivityTaskScheduled',
    'ActivityTaskTimedOut',
    'WorkflowExecutionCompleted',
  ]);
  const timedOut = eventsNamed(await historyEvents(handle), 'ActivityTaskTimedOut')[0].activityTaskTimedOutEventAttributes!;
  assert.equal(timedOut.failure?.timeoutFailureInfo?.timeoutType, TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START);
});

// ------------------------------------------------------------------ retries

test('retries with exponential backoff until the activity succeeds', async () => {
  const key = uid('backoff');
  const handle = await client.workflow.start(wf.retriesWithBackoff, { taskQueue, workflowId: uid('retry'), args: [key] });
  assert.equal(await handle.result(), 3);

  const attempts = activities.journal.get(key)!;
  assert.deepEqual(attempts.map((e) => e.attempt), [1, 2, 3]);
  // initialInterval 1 s, coefficient 2: the server holds each retry back at least 1 s, then
  // at least 2 s. Lower bounds only: a slow machine makes gaps longer, never shorter.
  const gaps = attempts.slice(1).map((e, i) => e.at - attempts[i].at);
  assert.ok(gaps[0] >= 950, `first retry after ${gaps[0]} ms, expected >= 1000 ms`);
  assert.ok(gaps[1] >= 1950, `second retry after ${gaps[1]} ms, expected >= 2000 ms`);

  // Retries are not in history: one scheduled event, and the started event carries the last attempt.
  const events = await historyEvents(handle);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'ActivityTaskScheduled',
    'ActivityTaskStarted',
    'ActivityTaskCompleted',
    'WorkflowExecutionCompleted',
  ]);
  const started = eventsNamed(events, 'ActivityTaskStarted')[0].activityTaskStartedEventAttributes!;
  assert.equal(started.attempt, 3);
  assert.equal(started.lastFailure?.message, 'attempt 2 fails');
  const retry = scheduledAttributes(events).retryPolicy!;
  assert.equal(durationMs(retry.initialInterval), 1000);
  assert.equal(retry.backoffCoefficient, 2);
  assert.equal(durationMs(retry.maximumInterval), 10_000);
  assert.equal(retry.maximumAttempts, 5);
});

test('retries stop at maximumAttempts: ActivityTaskFailed with MAXIMUM_ATTEMPTS_REACHED', async () => {
  const key = uid('exhaust');
  const handle = await client.workflow.start(wf.retriesExhausted, { taskQueue, workflowId: uid('retry-max'), args: [key] });
  const failure = await handle.result();
  assert.equal(failure.name, 'ActivityFailure');
  assert.equal(failure.retryState, 'MAXIMUM_ATTEMPTS_REACHED');
  assert.equal(failure.cause?.name, 'ApplicationFailure');
  assert.equal(failure.cause?.type, 'Transient');
  assert.equal(failure.cause?.message, 'failure of type Transient');
  assert.equal(activities.journal.get(key)!.length, 3);

  const events = await historyEvents(handle);
  assertSubsequence(['ActivityTaskScheduled', 'ActivityTaskStarted', 'ActivityTaskFailed', 'WorkflowExecutionCompleted'], events.map(eventName));
  assert.equal(eventsNamed(events, 'ActivityTaskStarted')[0].activityTaskStartedEventAttributes!.attempt, 3);
  const failed = eventsNamed(events, 'ActivityTaskFailed')[0].activityTaskFailedEventAttributes!;
  assert.equal(failed.retryState, RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED);
  assert.equal(failed.failure?.applicationFailureInfo?.type, 'Transient');
});

test('a non-retryable error type stops retries after one attempt', async () => {
  const key = uid('fatal');
  const handle = await client.workflow.start(wf.nonRetryableErrorType, { taskQueue, workflowId: uid('retry-fatal'), args: [key] });
  const failure = await handle.result();
  assert.equal(failure.retryState, 'NON_RETRYABLE_FAILURE');
  assert.equal(failure.cause?.type, 'Fatal');
  assert.equal(activities.journal.get(key)!.length, 1);

  const events = await historyEvents(handle);
  const failed = eventsNamed(events, 'ActivityTaskFailed')[0].activityTaskFailedEventAttributes!;
  assert.equal(failed.retryState, RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE);
  assert.equal(eventsNamed(events, 'ActivityTaskStarted')[0].activityTaskStartedEventAttributes!.attempt, 1);
});

// ------------------------------------------------------------------ heartbeats

test('heartbeat timeout fires and the retry sees the last heartbeat details', async () => {
  const key = uid('hb-retry');
  const handle = await client.workflow.start(wf.heartbeatTimeoutThenRetry, { taskQueue, workflowId: uid('hb-retry'), args: [key] });
  const result = await handle.result();
  assert.deepEqual(result, { attempt: 2, details: 'progress-1' });
  const starts = activities.journal.get(key)!.filter((e) => e.what === 'start');
  assert.deepEqual(starts.map((e) => [e.attempt, e.detail]), [[1, undefined], [2, 'progress-1']]);

  const events = await historyEvents(handle);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'ActivityTaskScheduled',
    'ActivityTaskStarted',
    'ActivityTaskCompleted',
    'WorkflowExecutionCompleted',
  ]);
  const started = eventsNamed(events, 'ActivityTaskStarted')[0].activityTaskStartedEventAttributes!;
  assert.equal(started.attempt, 2);
  assert.equal(started.lastFailure?.timeoutFailureInfo?.timeoutType, TimeoutType.TIMEOUT_TYPE_HEARTBEAT);
  assert.equal(durationMs(scheduledAttributes(events).heartbeatTimeout), 1000);
});

test('heartbeat timeout with no retries left: ActivityTaskTimedOut with HEARTBEAT and details', async () => {
  const key = uid('hb-fail');
  const handle = await client.workflow.start(wf.heartbeatTimeoutFails, { taskQueue, workflowId: uid('hb-fail'), args: [key] });
  const failure = await handle.result();
  assert.equal(failure.name, 'ActivityFailure');
  assert.equal(failure.cause?.name, 'TimeoutFailure');
  assert.equal(failure.cause?.timeoutType, 'HEARTBEAT');
  assert.equal(failure.cause?.lastHeartbeatDetails, 'progress-1');

  const events = await historyEvents(handle);
  assertSubsequence(['ActivityTaskScheduled', 'ActivityTaskStarted', 'ActivityTaskTimedOut', 'WorkflowExecutionCompleted'], events.map(eventName));
  const timedOut = eventsNamed(events, 'ActivityTaskTimedOut')[0].activityTaskTimedOutEventAttributes!;
  const info = timedOut.failure?.timeoutFailureInfo;
  assert.equal(info?.timeoutType, TimeoutType.TIMEOUT_TYPE_HEARTBEAT);
  assert.equal(defaultPayloadConverter.fromPayload(info!.lastHeartbeatDetails!.payloads![0]), 'progress-1');
});

// ------------------------------------------------------------------ cancellation

test('a running activity is cancelled through its heartbeat', async () => {
  const key = uid('cancel');
  const handle = await client.workflow.start(wf.cancelRunningActivity, { taskQueue, workflowId: uid('act-cancel'), args: [key] });
  await waitUntil('activity started', () => activities.journal.get(key)?.some((e) => e.what === 'start'));
  await handle.signal(wf.cancelActivitySignal);
  const failure = await handle.result();
  assert.equal(failure.name, 'ActivityFailure');
  assert.equal(failure.cause?.name, 'CancelledFailure');
  assert.ok(activities.journal.get(key)!.some((e) => e.what === 'cancelled'), 'the activity saw the cancellation');

  const names = withoutWorkflowTasks(await eventNames(handle));
  assert.deepEqual(names, [
    'WorkflowExecutionStarted',
    'ActivityTaskScheduled',
    'WorkflowExecutionSignaled',
    'ActivityTaskCancelRequested',
    'ActivityTaskStarted',
    'ActivityTaskCanceled',
    'WorkflowExecutionCompleted',
  ]);
});

// ------------------------------------------------------------------ parallel

test('parallel activities are scheduled together and run concurrently', async () => {
  const key = uid('parallel');
  const handle = await client.workflow.start(wf.parallelActivities, { taskQueue, workflowId: uid('parallel'), args: [key, 4] });
  assert.deepEqual(await handle.result(), [0, 10, 20, 30]);

  // Each activity ended only once all four had started (meetAll), so they ran at the same time.
  const journal = activities.journal.get(key)!;
  assert.deepEqual(journal.filter((e) => e.what === 'start').map((e) => e.detail).sort(), [0, 1, 2, 3]);
  assert.deepEqual(journal.filter((e) => e.what === 'end').map((e) => e.detail), [4, 4, 4, 4], 'each saw all four started');

  const names = await eventNames(handle);
  assert.equal(countOf(names, 'ActivityTaskScheduled'), 4);
  assert.equal(countOf(names, 'ActivityTaskStarted'), 4);
  assert.equal(countOf(names, 'ActivityTaskCompleted'), 4);
  // All four commands come from the first workflow task.
  const firstCompleted = names.indexOf('WorkflowTaskCompleted');
  assert.deepEqual(names.slice(firstCompleted + 1, firstCompleted + 5), Array(4).fill('ActivityTaskScheduled'));
});
