// Guide: timers (workflow.sleep, condition with a timeout).
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import * as wf from '../workflows/timers';
import {
  connectClient,
  durationMs,
  eventName,
  eventsNamed,
  historyEvents,
  RunningWorker,
  startWorker,
  test,
  timestampMs,
  uid,
  waitForEvent,
  withoutWorkflowTasks,
  HOOK,
  shutdown,
} from '../support';

const taskQueue = uid('ts-timers');
let client: Client;
let connection: Connection;
let worker: RunningWorker;

before(async () => {
  ({ client, connection } = await connectClient());
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/timers') });
}, HOOK);

after(() => shutdown(() => worker?.stop(), () => connection?.close()), HOOK);

test('sleep starts a timer that fires after the duration', async () => {
  const started = Date.now();
  const handle = await client.workflow.start(wf.sleeper, { taskQueue, workflowId: uid('sleep'), args: [1000] });
  const workflowElapsed = await handle.result();
  assert.ok(Date.now() - started >= 1000, 'the result came no sooner than the timer');
  assert.ok(workflowElapsed >= 1000, `workflow clock advanced ${workflowElapsed} ms`);

  const events = await historyEvents(handle);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'TimerStarted',
    'TimerFired',
    'WorkflowExecutionCompleted',
  ]);
  const timerStarted = eventsNamed(events, 'TimerStarted')[0];
  const timerFired = eventsNamed(events, 'TimerFired')[0];
  assert.equal(durationMs(timerStarted.timerStartedEventAttributes!.startToFireTimeout), 1000);
  assert.equal(timerFired.timerFiredEventAttributes!.timerId, timerStarted.timerStartedEventAttributes!.timerId);
  assert.equal(Number(timerFired.timerFiredEventAttributes!.startedEventId), Number(timerStarted.eventId));
  const waited = timestampMs(timerFired.eventTime) - timestampMs(timerStarted.eventTime);
  assert.ok(waited >= 1000, `TimerFired ${waited} ms after TimerStarted`);
});

test('two timers started together fire in order of their durations', async () => {
  const handle = await client.workflow.start(wf.twoTimers, { taskQueue, workflowId: uid('two-timers') });
  assert.deepEqual(await handle.result(), ['short', 'long']);

  const events = await historyEvents(handle);
  const names = events.map(eventName);
  const firstTaskDone = names.indexOf('WorkflowTaskCompleted');
  assert.deepEqual(names.slice(firstTaskDone + 1, firstTaskDone + 3), ['TimerStarted', 'TimerStarted']);
  const started = eventsNamed(events, 'TimerStarted').map((e) => e.timerStartedEventAttributes!);
  assert.deepEqual(started.map((a) => durationMs(a.startToFireTimeout)), [1500, 500]);
  const fired = eventsNamed(events, 'TimerFired').map((e) => e.timerFiredEventAttributes!.timerId);
  assert.deepEqual(fired, [started[1].timerId, started[0].timerId], 'the 500 ms timer fires first');
});

test('condition with timeout: the timer fires when no signal comes', async () => {
  const handle = await client.workflow.start(wf.waitWithDeadline, { taskQueue, workflowId: uid('deadline'), args: [1000] });
  assert.equal(await handle.result(), false);
  assert.deepEqual(withoutWorkflowTasks((await historyEvents(handle)).map(eventName)), [
    'WorkflowExecutionStarted',
    'TimerStarted',
    'TimerFired',
    'WorkflowExecutionCompleted',
  ]);
});

test('condition with timeout: a signal first cancels the timer', async () => {
  const handle = await client.workflow.start(wf.waitWithDeadline, { taskQueue, workflowId: uid('deadline-sig'), args: [60_000] });
  await waitForEvent(handle, 'TimerStarted');
  await handle.signal(wf.releaseSignal);
  assert.equal(await handle.result(), true);
  const events = await historyEvents(handle);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'TimerStarted',
    'WorkflowExecutionSignaled',
    'TimerCanceled',
    'WorkflowExecutionCompleted',
  ]);
  const timerId = eventsNamed(events, 'TimerStarted')[0].timerStartedEventAttributes!.timerId;
  assert.equal(eventsNamed(events, 'TimerCanceled')[0].timerCanceledEventAttributes!.timerId, timerId);
});
