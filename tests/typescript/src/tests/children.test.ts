// Guide: child workflows and continue-as-new.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import * as wf from '../workflows/children';
import {
  connectClient,
  eventName,
  eventNames,
  eventsNamed,
  historyEvents,
  RetryState,
  RunningWorker,
  startWorker,
  test,
  uid,
  withoutWorkflowTasks,
  HOOK,
  shutdown,
} from '../support';

const taskQueue = uid('ts-children');
let client: Client;
let connection: Connection;
let worker: RunningWorker;

before(async () => {
  ({ client, connection } = await connectClient());
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/children') });
}, HOOK);

after(() => shutdown(() => worker?.stop(), () => connection?.close()), HOOK);

test('child workflow: parent gets the result; both histories show the relationship', async () => {
  const parentId = uid('parent');
  const childId = uid('child');
  const parent = await client.workflow.start(wf.parentWorkflow, { taskQueue, workflowId: parentId, args: [childId] });
  assert.equal(await parent.result(), `child Ada of ${parentId}`);

  const events = await historyEvents(parent);
  assert.deepEqual(withoutWorkflowTasks(events.map(eventName)), [
    'WorkflowExecutionStarted',
    'StartChildWorkflowExecutionInitiated',
    'ChildWorkflowExecutionStarted',
    'ChildWorkflowExecutionCompleted',
    'WorkflowExecutionCompleted',
  ]);
  const initiated = eventsNamed(events, 'StartChildWorkflowExecutionInitiated')[0].startChildWorkflowExecutionInitiatedEventAttributes!;
  assert.equal(initiated.workflowId, childId);
  assert.equal(initiated.workflowType?.name, 'childGreeting');
  assert.equal(initiated.taskQueue?.name, taskQueue);
  const childStarted = eventsNamed(events, 'ChildWorkflowExecutionStarted')[0].childWorkflowExecutionStartedEventAttributes!;
  const completed = eventsNamed(events, 'ChildWorkflowExecutionCompleted')[0].childWorkflowExecutionCompletedEventAttributes!;
  assert.equal(completed.workflowExecution?.workflowId, childId);
  assert.equal(completed.workflowExecution?.runId, childStarted.workflowExecution?.runId);
  assert.equal(defaultPayloadConverter.fromPayload(completed.result!.payloads![0]), `child Ada of ${parentId}`);

  const child = client.workflow.getHandle(childId);
  const childEvents = await historyEvents(child);
  const childStartAttrs = childEvents[0].workflowExecutionStartedEventAttributes!;
  assert.equal(childStartAttrs.parentWorkflowExecution?.workflowId, parentId);
  assert.equal(childStartAttrs.parentWorkflowExecution?.runId, parent.firstExecutionRunId);
  assert.equal(eventName(childEvents[childEvents.length - 1]), 'WorkflowExecutionCompleted');
  const description = await child.describe();
  assert.equal(description.parentExecution?.workflowId, parentId);
  assert.equal(description.status.name, 'COMPLETED');
});

test('two children started together both complete', async () => {
  const prefix = uid('kids');
  const parent = await client.workflow.start(wf.parentOfTwo, { taskQueue, workflowId: uid('parent2'), args: [prefix] });
  const pid = parent.workflowId;
  assert.deepEqual(await parent.result(), [`child a of ${pid}`, `child b of ${pid}`]);
  const names = await eventNames(parent);
  for (const n of ['StartChildWorkflowExecutionInitiated', 'ChildWorkflowExecutionStarted', 'ChildWorkflowExecutionCompleted']) {
    assert.equal(names.filter((x) => x === n).length, 2, n);
  }
});

test('a failing child raises ChildWorkflowFailure in the parent', async () => {
  const childId = uid('bad-child');
  const parent = await client.workflow.start(wf.parentOfFailingChild, { taskQueue, workflowId: uid('parent-f'), args: [childId] });
  const failure = await parent.result();
  assert.equal(failure.name, 'ChildWorkflowFailure');
  assert.equal(failure.retryState, 'RETRY_POLICY_NOT_SET', 'a child without retry policy is not retried');
  assert.equal(failure.cause?.name, 'ApplicationFailure');
  assert.equal(failure.cause?.message, 'child says no');
  assert.equal(failure.cause?.type, 'ChildError');

  const events = await historyEvents(parent);
  const failed = eventsNamed(events, 'ChildWorkflowExecutionFailed');
  assert.equal(failed.length, 1);
  const attrs = failed[0].childWorkflowExecutionFailedEventAttributes!;
  assert.equal(attrs.workflowExecution?.workflowId, childId);
  assert.equal(attrs.retryState, RetryState.RETRY_STATE_RETRY_POLICY_NOT_SET);
  assert.equal(attrs.failure?.applicationFailureInfo?.type, 'ChildError');
  const childNames = await eventNames(client.workflow.getHandle(childId));
  assert.equal(childNames[childNames.length - 1], 'WorkflowExecutionFailed');
});

test('continue-as-new chains runs; the handle follows them to the final result', async () => {
  const workflowId = uid('can');
  const handle = await client.workflow.start(wf.looping, { taskQueue, workflowId, args: [1, 3, []] });
  assert.deepEqual(await handle.result(), { seen: [1, 2, 3], runs: 3 });

  // Walk the chain from the first run.
  const runIds: string[] = [handle.firstExecutionRunId];
  for (let i = 0; i < 2; i++) {
    const run = client.workflow.getHandle(workflowId, runIds[i]);
    const events = await historyEvents(run);
    const last = events[events.length - 1];
    assert.equal(eventName(last), 'WorkflowExecutionContinuedAsNew', `run ${i + 1} ends with continue-as-new`);
    const attrs = last.workflowExecutionContinuedAsNewEventAttributes!;
    assert.equal(attrs.workflowType?.name, 'looping');
    assert.equal(attrs.taskQueue?.name, taskQueue);
    assert.deepEqual(defaultPayloadConverter.fromPayload(attrs.input!.payloads![0]), i + 2);
    assert.ok(attrs.newExecutionRunId);
    runIds.push(attrs.newExecutionRunId!);
    assert.equal((await run.describe()).status.name, 'CONTINUED_AS_NEW');
  }
  assert.equal(new Set(runIds).size, 3);

  const lastRun = client.workflow.getHandle(workflowId, runIds[2]);
  const events = await historyEvents(lastRun);
  const started = events[0].workflowExecutionStartedEventAttributes!;
  assert.equal(started.continuedExecutionRunId, runIds[1]);
  assert.equal(started.firstExecutionRunId, runIds[0]);
  assert.equal(started.initiator, temporal.api.enums.v1.ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_WORKFLOW);
  assert.equal(eventName(events[events.length - 1]), 'WorkflowExecutionCompleted');
  // The latest run is what a handle without run id describes.
  const latest = await client.workflow.getHandle(workflowId).describe();
  assert.equal(latest.runId, runIds[2]);
  assert.equal(latest.status.name, 'COMPLETED');
});
