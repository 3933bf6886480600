// Guide: signalling and cancelling other workflows (external workflow handles, child cancellation).
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import * as wf from '../workflows/external';
import {
  connectClient,
  eventName,
  eventsNamed,
  historyEvents,
  RunningWorker,
  startWorker,
  test,
  uid,
  withoutWorkflowTasks,
  HOOK,
  shutdown,
} from '../support';

const taskQueue = uid('ts-external');
let client: Client;
let connection: Connection;
let worker: RunningWorker;

before(async () => {
  ({ client, connection } = await connectClient());
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/external') });
}, HOOK);

after(() => shutdown(() => worker?.stop(), () => connection?.close()), HOOK);

test('a workflow signals another: both histories name the other side', async () => {
  const target = await client.workflow.start(wf.waitForPoke, { taskQueue, workflowId: uid('poked') });
  const caller = await client.workflow.start(wf.signalOther, { taskQueue, workflowId: uid('poker'), args: [target.workflowId] });
  assert.equal(await caller.result(), 'signalled');
  assert.equal(await target.result(), 'poked with hi');

  const events = await historyEvents(caller);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'SignalExternalWorkflowExecutionInitiated',
    'ExternalWorkflowExecutionSignaled',
    'WorkflowExecutionCompleted',
  ]);
  const initiated = eventsNamed(events, 'SignalExternalWorkflowExecutionInitiated')[0];
  const signaled = eventsNamed(events, 'ExternalWorkflowExecutionSignaled')[0].externalWorkflowExecutionSignaledEventAttributes!;
  assert.equal(Number(signaled.initiatedEventId), Number(initiated.eventId));
  assert.equal(signaled.workflowExecution?.workflowId, target.workflowId);

  const received = eventsNamed(await historyEvents(target), 'WorkflowExecutionSignaled')[0].workflowExecutionSignaledEventAttributes!;
  assert.equal(received.signalName, 'poke');
  assert.equal(received.externalWorkflowExecution?.workflowId, caller.workflowId);
});

test('a signal to a workflow that does not exist fails in the caller, with its cause', async () => {
  const caller = await client.workflow.start(wf.signalOther, { taskQueue, workflowId: uid('poker'), args: [uid('nobody')] });
  assert.notEqual(await caller.result(), 'signalled');
  const failed = eventsNamed(await historyEvents(caller), 'SignalExternalWorkflowExecutionFailed')[0]
    .signalExternalWorkflowExecutionFailedEventAttributes!;
  assert.equal(
    failed.cause,
    temporal.api.enums.v1.SignalExternalWorkflowExecutionFailedCause.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED_CAUSE_EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND,
  );
});

test('a parent cancels its started child and sees the child cancelled', async () => {
  const childId = uid('child');
  const parent = await client.workflow.start(wf.cancelChild, { taskQueue, workflowId: uid('parent'), args: [childId] });
  assert.equal(await parent.result(), 'child cancelled');
  assert.deepEqual(withoutWorkflowTasks((await historyEvents(parent)).map(eventName)), [
    'WorkflowExecutionStarted',
    'StartChildWorkflowExecutionInitiated',
    'ChildWorkflowExecutionStarted',
    'RequestCancelExternalWorkflowExecutionInitiated',
    'ExternalWorkflowExecutionCancelRequested',
    'ChildWorkflowExecutionCanceled',
    'WorkflowExecutionCompleted',
  ]);
  const childEvents = await historyEvents(client.workflow.getHandle(childId));
  const requested = eventsNamed(childEvents, 'WorkflowExecutionCancelRequested')[0].workflowExecutionCancelRequestedEventAttributes!;
  assert.equal(requested.externalWorkflowExecution?.workflowId, parent.workflowId);
  assert.equal(eventName(childEvents[childEvents.length - 1]), 'WorkflowExecutionCanceled');
});

test('a workflow asks another to cancel', async () => {
  const target = await client.workflow.start(wf.waitForever, { taskQueue, workflowId: uid('target') });
  const caller = await client.workflow.start(wf.cancelOther, { taskQueue, workflowId: uid('canceller'), args: [target.workflowId] });
  assert.equal(await caller.result(), 'cancel requested');
  await assert.rejects(target.result());
  assert.equal((await target.describe()).status.name, 'CANCELLED');
});
