// Guide: signals, queries (open and closed runs), updates with validators.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import {
  ApplicationFailure,
  Client,
  Connection,
  QueryNotRegisteredError,
  QueryRejectedError,
  WorkflowUpdateFailedError,
  WorkflowUpdateStage,
} from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import * as wf from '../workflows/messages';
import {
  connectClient,
  countOf,
  eventName,
  eventNames,
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

const taskQueue = uid('ts-messages');
let client: Client;
let connection: Connection;
let worker: RunningWorker;

before(async () => {
  ({ client, connection } = await connectClient());
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/messages') });
}, HOOK);

after(() => shutdown(() => worker?.stop(), () => connection?.close()), HOOK);

function startCounter(prefix: string) {
  return client.workflow.start(wf.counter, { taskQueue, workflowId: uid(prefix) });
}

// ------------------------------------------------------------------ signals

test('signals are delivered in order and recorded in history', async () => {
  const handle = await startCounter('signals');
  await handle.signal(wf.incrementSignal, 1);
  await handle.signal(wf.incrementSignal, 2);
  await handle.signal(wf.incrementSignal, 3);
  await handle.signal(wf.finishSignal);
  assert.equal(await handle.result(), 6);

  const events = await historyEvents(handle);
  const signaled = eventsNamed(events, 'WorkflowExecutionSignaled').map((e) => e.workflowExecutionSignaledEventAttributes!);
  assert.deepEqual(signaled.map((s) => s.signalName), ['increment', 'increment', 'increment', 'finish']);
  assert.deepEqual(signaled.slice(0, 3).map((s) => defaultPayloadConverter.fromPayload(s.input!.payloads![0])), [1, 2, 3]);
  const names = withoutWorkflowTasks(events.map(eventName));
  assert.equal(names[0], 'WorkflowExecutionStarted');
  assert.equal(names[names.length - 1], 'WorkflowExecutionCompleted');
});

test('signalWithStart starts the workflow and delivers the signal first', async () => {
  const workflowId = uid('signal-with-start');
  const handle = await client.workflow.signalWithStart(wf.counter, {
    taskQueue,
    workflowId,
    signal: wf.incrementSignal,
    signalArgs: [40],
  });
  // A second signalWithStart signals the running workflow instead of starting another.
  const again = await client.workflow.signalWithStart(wf.counter, { taskQueue, workflowId, signal: wf.incrementSignal, signalArgs: [2] });
  assert.equal(again.signaledRunId, handle.signaledRunId);
  await handle.signal(wf.finishSignal);
  assert.equal(await handle.result(), 42);

  const names = await eventNames(handle);
  assert.deepEqual(names.slice(0, 2), ['WorkflowExecutionStarted', 'WorkflowExecutionSignaled']);
  assert.equal(countOf(names, 'WorkflowExecutionStarted'), 1);
  assert.equal(countOf(names, 'WorkflowExecutionSignaled'), 3);
});

// ------------------------------------------------------------------ queries

test('query an open workflow: reads state, adds no history', async () => {
  const handle = await startCounter('query-open');
  await handle.signal(wf.incrementSignal, 5);
  await handle.signal(wf.incrementSignal, 7);
  assert.equal(await handle.query(wf.countQuery), 12);
  assert.deepEqual(await handle.query(wf.historyQuery, 1), [7]);
  const before = await eventNames(handle);
  assert.equal(await handle.query(wf.countQuery), 12);
  assert.deepEqual(await eventNames(handle), before, 'a query writes no events');
  assert.ok(!before.some((n) => n.includes('Query')));
  await handle.signal(wf.finishSignal);
  assert.equal(await handle.result(), 12);
});

test('query an unknown name: QueryNotRegisteredError', async () => {
  const handle = await startCounter('query-unknown');
  try {
    await assert.rejects(handle.query('noSuchQuery'), (err: unknown) => {
      assert.ok(err instanceof QueryNotRegisteredError, `got ${err}`);
      assert.match(err.message, /noSuchQuery/);
      return true;
    });
  } finally {
    await handle.signal(wf.finishSignal);
  }
  assert.equal(await handle.result(), 0);
});

test('query a closed workflow with the default queryRejectCondition: answered from history', async () => {
  const handle = await startCounter('query-closed');
  await handle.signal(wf.incrementSignal, 3);
  await handle.signal(wf.incrementSignal, 4);
  await handle.signal(wf.finishSignal);
  assert.equal(await handle.result(), 7);
  assert.equal((await handle.describe()).status.name, 'COMPLETED');
  // The worker replays the closed run to answer.
  assert.equal(await handle.query(wf.countQuery), 7);
  assert.deepEqual(await handle.query(wf.historyQuery, 2), [3, 4]);
});

test('query a closed workflow with queryRejectCondition NOT_OPEN: QueryRejectedError', async () => {
  const strict = await connectClient({ queryRejectCondition: 'NOT_OPEN' });
  try {
    const handle = await startCounter('query-rejected');
    await handle.signal(wf.finishSignal);
    await handle.result();
    const strictHandle = strict.client.workflow.getHandle(handle.workflowId);
    await assert.rejects(strictHandle.query(wf.countQuery), (err: unknown) => {
      assert.ok(err instanceof QueryRejectedError, `got ${err}`);
      assert.equal(err.status, temporal.api.enums.v1.WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED);
      return true;
    });
    // ...while an open one is still answered under the same condition.
    const open = await startCounter('query-not-rejected');
    await open.signal(wf.incrementSignal, 9);
    assert.equal(await strict.client.workflow.getHandle(open.workflowId).query(wf.countQuery), 9);
    await open.signal(wf.finishSignal);
    await open.result();
  } finally {
    await strict.connection.close();
  }
});

// ------------------------------------------------------------------ updates

test('update accepted by its validator returns the handler result and is in history', async () => {
  const handle = await startCounter('update-ok');
  assert.equal(await handle.executeUpdate(wf.addUpdate, { args: [10], updateId: 'first-add' }), 10);
  const second = await handle.startUpdate(wf.addUpdate, { args: [5], waitForStage: WorkflowUpdateStage.ACCEPTED });
  assert.equal(await second.result(), 15);
  assert.equal(await handle.query(wf.countQuery), 15);
  await handle.signal(wf.finishSignal);
  assert.equal(await handle.result(), 15);

  const events = await historyEvents(handle);
  const names = events.map(eventName);
  assert.equal(countOf(names, 'WorkflowExecutionUpdateAccepted'), 2);
  assert.equal(countOf(names, 'WorkflowExecutionUpdateCompleted'), 2);
  const accepted = eventsNamed(events, 'WorkflowExecutionUpdateAccepted')[0].workflowExecutionUpdateAcceptedEventAttributes!;
  assert.equal(accepted.acceptedRequest?.meta?.updateId, 'first-add');
  assert.equal(accepted.acceptedRequest?.input?.name, 'add');
  assert.equal(defaultPayloadConverter.fromPayload(accepted.acceptedRequest!.input!.args!.payloads![0]), 10);
  const completed = eventsNamed(events, 'WorkflowExecutionUpdateCompleted')[0].workflowExecutionUpdateCompletedEventAttributes!;
  assert.equal(completed.meta?.updateId, 'first-add');
  assert.equal(defaultPayloadConverter.fromPayload(completed.outcome!.success!.payloads![0]), 10);
  // Accepted comes before its completion.
  assert.ok(names.indexOf('WorkflowExecutionUpdateAccepted') < names.indexOf('WorkflowExecutionUpdateCompleted'));
});

test('update rejected by its validator fails the call and leaves no trace in history', async () => {
  const handle = await startCounter('update-rejected');
  await handle.signal(wf.incrementSignal, 1);
  await assert.rejects(handle.executeUpdate(wf.addUpdate, { args: [-3] }), (err: unknown) => {
    assert.ok(err instanceof WorkflowUpdateFailedError, `got ${err}`);
    assert.ok(err.cause instanceof ApplicationFailure, `cause ${err.cause}`);
    assert.equal(err.cause.message, 'amount must be positive, got -3');
    assert.equal(err.cause.type, 'InvalidAmount');
    return true;
  });
  // The workflow is unaffected and still takes valid updates.
  assert.equal(await handle.executeUpdate(wf.addUpdate, { args: [2] }), 3);
  await handle.signal(wf.finishSignal);
  assert.equal(await handle.result(), 3);

  const names = await eventNames(handle);
  assert.equal(countOf(names, 'WorkflowExecutionUpdateAccepted'), 1, 'only the valid update is accepted');
  assert.equal(countOf(names, 'WorkflowExecutionUpdateCompleted'), 1);
  assert.ok(!names.includes('WorkflowExecutionUpdateRejected'), 'rejections are not written to history');
});
