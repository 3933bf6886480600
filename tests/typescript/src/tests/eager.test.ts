// Guide: eager workflow start — the first workflow task comes back in the start response and
// runs on a local worker that shares the client's NativeConnection.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import * as wf from '../workflows/eager';
import { ADDRESS, eventName, historyEvents, NAMESPACE, RunningWorker, startWorker, test, uid, HOOK, shutdown } from '../support';

const taskQueue = uid('ts-eager');
let client: Client;
let connection: NativeConnection;
let worker: RunningWorker;

before(async () => {
  // Worker first: it installs the Runtime that NativeConnection needs.
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/eager') });
  connection = worker.connection;
  client = new Client({ connection, namespace: NAMESPACE });
}, HOOK);

after(() => shutdown(() => worker?.stop()), HOOK);

test('requestEagerStart: the workflow is started eagerly on the local worker', async () => {
  const handle = await client.workflow.start(wf.eagerWorkflow, {
    taskQueue,
    workflowId: uid('eager'),
    args: ['start'],
    requestEagerStart: true,
  });
  assert.equal(handle.eagerlyStarted, true, 'the server handed the first workflow task back in the start response');
  assert.equal(await handle.result(), 'eager start attempt 1');

  const events = await historyEvents(handle);
  assert.deepEqual(events.map(eventName), [
    'WorkflowExecutionStarted',
    'WorkflowTaskScheduled',
    'WorkflowTaskStarted',
    'WorkflowTaskCompleted',
    'WorkflowExecutionCompleted',
  ]);
  // The eager task was dispatched with the start: it is started right away, by this worker.
  const started = events[2].workflowTaskStartedEventAttributes!;
  const completed = events[3].workflowTaskCompletedEventAttributes!;
  assert.equal(started.identity, completed.identity);
});

test('without requestEagerStart the start is not eager', async () => {
  const handle = await client.workflow.start(wf.eagerWorkflow, { taskQueue, workflowId: uid('not-eager'), args: ['plain'] });
  assert.equal(handle.eagerlyStarted, false);
  assert.equal(await handle.result(), 'eager plain attempt 1');
});

test('requestEagerStart needs a NativeConnection shared with a worker', async () => {
  const { Connection } = await import('@temporalio/client');
  const grpc = await Connection.connect({ address: ADDRESS });
  try {
    const plainClient = new Client({ connection: grpc, namespace: NAMESPACE });
    await assert.rejects(
      plainClient.workflow.start(wf.eagerWorkflow, { taskQueue, workflowId: uid('eager-grpc'), args: ['x'], requestEagerStart: true }),
      /Eager workflow start requires a NativeConnection/,
    );
  } finally {
    await grpc.close();
  }
});
