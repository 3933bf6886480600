// Guide: testing with the replayer — Worker.runReplayHistory on handle.fetchHistory().
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client, Connection, WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode, Worker, WorkflowBundle } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import * as activities from '../activities/hello';
import * as wf from '../workflows/replay';
import { connectClient, eventName, RunningWorker, startWorker, test, uid, waitForEvent, withoutWorkflowTasks, HOOK, shutdown } from '../support';

const taskQueue = uid('ts-replay');
let client: Client;
let connection: Connection;
let worker: RunningWorker;
let original: WorkflowBundle;
let changed: WorkflowBundle;
const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

before(async () => {
  ({ client, connection } = await connectClient());
  original = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows/replay'), logger: quietLogger });
  changed = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows/replay-changed'), logger: quietLogger });
  worker = await startWorker({ taskQueue, workflowBundle: original, activities });
}, HOOK);

after(() => shutdown(() => worker?.stop(), () => connection?.close()), HOOK);

async function completedRun(name: string): Promise<WorkflowHandle> {
  const handle = await client.workflow.start(wf.replayMe, { taskQueue, workflowId: uid('replay'), args: ['Hi'] });
  await waitForEvent(handle, 'TimerFired');
  await handle.signal(wf.nameSignal, name);
  assert.equal(await handle.result(), `Hi, ${name}!`);
  return handle;
}

test('a fetched history replays cleanly against the code that produced it', async () => {
  const handle = await completedRun('Replay');
  const history = await handle.fetchHistory();
  assert.deepEqual(withoutWorkflowTasks((history.events ?? []).map(eventName)), [
    'WorkflowExecutionStarted',
    'TimerStarted',
    'TimerFired',
    'WorkflowExecutionSignaled',
    'ActivityTaskScheduled',
    'ActivityTaskStarted',
    'ActivityTaskCompleted',
    'WorkflowExecutionCompleted',
  ]);
  await Worker.runReplayHistory({ workflowBundle: original }, history, handle.workflowId);
  // Also from the workflowsPath the worker bundles itself.
  await Worker.runReplayHistory({ workflowsPath: require.resolve('../workflows/replay') }, history);
});

test('the replayer reports a DeterminismViolationError for incompatible code', async () => {
  const handle = await completedRun('Changed');
  await assert.rejects(
    Worker.runReplayHistory({ workflowBundle: changed }, await handle.fetchHistory(), handle.workflowId),
    DeterminismViolationError,
  );
});

test('batch replay of several fetched histories with runReplayHistories', async () => {
  const handles = [await completedRun('One'), await completedRun('Two')];
  const histories = await Promise.all(handles.map(async (h) => ({ workflowId: h.workflowId, history: await h.fetchHistory() })));
  const good = [];
  for await (const result of Worker.runReplayHistories({ workflowBundle: original }, histories)) good.push(result);
  assert.deepEqual(good.map((r) => [r.workflowId, r.error]), handles.map((h) => [h.workflowId, undefined]));

  const bad = [];
  for await (const result of Worker.runReplayHistories({ workflowBundle: changed }, histories)) bad.push(result);
  assert.equal(bad.length, 2);
  for (const r of bad) assert.ok(r.error instanceof DeterminismViolationError, `${r.workflowId}: ${r.error}`);
});
