// Guide: cancellation scopes and workflow cancellation.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { CancelledFailure, Client, Connection, WorkflowFailedError } from '@temporalio/client';
import * as activities from '../activities/cleanup';
import * as wf from '../workflows/cancellation';
import {
  connectClient,
  eventName,
  eventsNamed,
  historyEvents,
  RunningWorker,
  startWorker,
  test,
  uid,
  waitForEvent,
  withoutWorkflowTasks,
  HOOK,
  shutdown,
} from '../support';

const taskQueue = uid('ts-cancel');
let client: Client;
let connection: Connection;
let worker: RunningWorker;

before(async () => {
  ({ client, connection } = await connectClient());
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/cancellation'), activities });
}, HOOK);

after(() => shutdown(() => worker?.stop(), () => connection?.close()), HOOK);

test('cancelling a workflow: cleanup runs in a non-cancellable scope, then the run is canceled', async () => {
  const handle = await client.workflow.start(wf.cancellableWithCleanup, { taskQueue, workflowId: uid('wf-cancel') });
  await waitForEvent(handle, 'TimerStarted');
  await handle.cancel();
  await assert.rejects(handle.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError, `got ${err}`);
    assert.ok(err.cause instanceof CancelledFailure, `cause ${err.cause}`);
    return true;
  });
  assert.ok(activities.seen.includes('cleanup:after-cancel'));
  assert.equal((await handle.describe()).status.name, 'CANCELLED');

  const events = await historyEvents(handle);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'TimerStarted',
    'WorkflowExecutionCancelRequested',
    'TimerCanceled',
    'ActivityTaskScheduled',
    'ActivityTaskStarted',
    'ActivityTaskCompleted',
    'WorkflowExecutionCanceled',
  ]);
  const scheduled = eventsNamed(events, 'ActivityTaskScheduled')[0].activityTaskScheduledEventAttributes!;
  assert.equal(scheduled.activityType?.name, 'cleanup');
});

test('CancellationScope.withTimeout cancels the activity inside it', async () => {
  const key = uid('scope-timeout');
  const handle = await client.workflow.start(wf.activityWithScopeTimeout, { taskQueue, workflowId: uid('scope-timeout'), args: [key] });
  assert.equal(await handle.result(), 'activity cancelled by scope timeout');
  assert.ok(activities.seen.includes(`cancelled:${key}`), 'the activity saw its cancellation');

  const names = withoutWorkflowTasks((await historyEvents(handle)).map(eventName));
  assert.deepEqual(names, [
    'WorkflowExecutionStarted',
    'TimerStarted', // the scope's deadline timer is started before the activity is scheduled
    'ActivityTaskScheduled',
    'TimerFired',
    'ActivityTaskCancelRequested',
    'ActivityTaskStarted',
    'ActivityTaskCanceled',
    'WorkflowExecutionCompleted',
  ]);
});

test('cancelling an inner scope cancels only its timer', async () => {
  const handle = await client.workflow.start(wf.innerScopeCancelled, { taskQueue, workflowId: uid('inner-scope') });
  assert.deepEqual(await handle.result(), ['inner timer cancelled', 'outer still running']);

  const events = await historyEvents(handle);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'TimerStarted',
    'TimerStarted',
    'TimerFired',
    'TimerCanceled',
    'TimerStarted',
    'TimerFired',
    'WorkflowExecutionCompleted',
  ]);
  const [longTimer] = eventsNamed(events, 'TimerStarted');
  assert.equal(eventsNamed(events, 'TimerCanceled')[0].timerCanceledEventAttributes!.timerId, longTimer.timerStartedEventAttributes!.timerId);
});
