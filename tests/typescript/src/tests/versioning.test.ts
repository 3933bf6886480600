// Guide: versioning with patches — patched() for a change, deprecatePatch() once old runs are gone.
// Each workflow version is its own bundle; histories fetched from the server are replayed
// against the other versions to show which upgrades are safe.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client, Connection, WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { bundleWorkflowCode, Worker, WorkflowBundle } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import * as activities from '../activities/steps';
import { finishSignal, PATCH_ID } from '../workflows/versions/common';
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
  HOOK,
  shutdown,
} from '../support';

type Version = 'v1' | 'v2' | 'v3' | 'unpatched';
const bundles = {} as Record<Version, WorkflowBundle>;
const workers = {} as Record<'v1' | 'v2' | 'v3', RunningWorker>;
let client: Client;
let connection: Connection;

before(async () => {
  ({ client, connection } = await connectClient());
  for (const v of ['v1', 'v2', 'v3', 'unpatched'] as Version[]) {
    bundles[v] = await bundleWorkflowCode({ workflowsPath: require.resolve(`../workflows/versions/${v}`), logger: quietLogger });
  }
  for (const v of ['v1', 'v2', 'v3'] as const) {
    workers[v] = await startWorker({ taskQueue: uid(`ts-version-${v}`), workflowBundle: bundles[v], activities });
  }
}, HOOK);

after(() => shutdown(...Object.values(workers).map((w) => () => w.stop()), () => connection?.close()), HOOK);

const quietLogger = {
  log() {},
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** Runs `versioned` to completion on the given version's worker. */
async function runOn(version: 'v1' | 'v2' | 'v3'): Promise<{ handle: WorkflowHandle; result: string }> {
  const handle = await client.workflow.start('versioned', { taskQueue: workers[version].taskQueue, workflowId: uid(`versioned-${version}`) });
  await waitForEvent(handle, 'ActivityTaskCompleted');
  await handle.signal(finishSignal);
  return { handle, result: await handle.result() };
}

function patchMarkers(events: Awaited<ReturnType<typeof historyEvents>>): { id: string; deprecated: boolean }[] {
  return eventsNamed(events, 'MarkerRecorded')
    .map((e) => e.markerRecordedEventAttributes!)
    .filter((m) => m.markerName === 'core_patch')
    .map((m) => defaultPayloadConverter.fromPayload(m.details!['patch-data'].payloads![0]));
}

function activityTypes(events: Awaited<ReturnType<typeof historyEvents>>): string[] {
  return eventsNamed(events, 'ActivityTaskScheduled').map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name!);
}

async function replay(version: Version, handle: WorkflowHandle): Promise<void> {
  await Worker.runReplayHistory({ workflowBundle: bundles[version] }, await handle.fetchHistory(), handle.workflowId);
}

test('v1 code takes the old path and records no marker', async () => {
  const { handle, result } = await runOn('v1');
  assert.equal(result, 'old');
  const events = await historyEvents(handle);
  assert.deepEqual(activityTypes(events), ['oldStep']);
  assert.deepEqual(patchMarkers(events), []);
});

test('patched(): a new run on v2 takes the new path and records the patch marker', async () => {
  const { handle, result } = await runOn('v2');
  assert.equal(result, 'new');
  const events = await historyEvents(handle);
  const names = events.map(eventName);
  assert.deepEqual(activityTypes(events), ['newStep']);
  assert.deepEqual(patchMarkers(events), [{ id: PATCH_ID, deprecated: false }]);
  assert.ok(names.indexOf('MarkerRecorded') < names.indexOf('ActivityTaskScheduled'), 'the marker precedes the patched command');
  // The SDK also upserts TemporalChangeVersion so patched runs can be found.
  const upsert = eventsNamed(events, 'UpsertWorkflowSearchAttributes')[0].upsertWorkflowSearchAttributesEventAttributes!;
  assert.deepEqual(defaultPayloadConverter.fromPayload(upsert.searchAttributes!.indexedFields!['TemporalChangeVersion']), [PATCH_ID]);
});

test('patched(): a run started on v1 and finished by a v2 worker keeps the old path', async () => {
  const taskQueue = uid('ts-version-upgrade');
  // No workflow cache, so the v2 worker replays the run from its history.
  const v1 = await startWorker({ taskQueue, workflowBundle: bundles.v1, activities, maxCachedWorkflows: 0 });
  let handle: WorkflowHandle;
  try {
    handle = await client.workflow.start('versioned', { taskQueue, workflowId: uid('versioned-upgrade') });
    await waitForEvent(handle, 'WorkflowTaskCompleted', 2); // oldStep done, waiting for finish
  } finally {
    await v1.stop();
  }
  const v2 = await startWorker({ taskQueue, workflowBundle: bundles.v2, activities, maxCachedWorkflows: 0 });
  try {
    await handle.signal(finishSignal);
    assert.equal(await handle.result(), 'old');
  } finally {
    await v2.stop();
  }
  const events = await historyEvents(handle);
  assert.deepEqual(activityTypes(events), ['oldStep']);
  assert.deepEqual(patchMarkers(events), [], 'no marker: patched() returned false during replay');
  assert.equal(eventName(events[events.length - 1]), 'WorkflowExecutionCompleted');
});

test('deprecatePatch(): v3 runs record a deprecated marker', async () => {
  const { handle, result } = await runOn('v3');
  assert.equal(result, 'new');
  const events = await historyEvents(handle);
  assert.deepEqual(activityTypes(events), ['newStep']);
  assert.deepEqual(patchMarkers(events), [{ id: PATCH_ID, deprecated: true }]);
});

test('replaying fetched histories across versions: which upgrades are safe', async () => {
  const [h1, h2, h3] = [(await runOn('v1')).handle, (await runOn('v2')).handle, (await runOn('v3')).handle];

  // Each version replays its own history.
  await replay('v1', h1);
  await replay('v2', h2);
  await replay('v3', h3);
  // patched() keeps v2 compatible with both old and new runs.
  await replay('v2', h1);
  await replay('v2', h3);
  // deprecatePatch() keeps v3 compatible with v2's patched runs...
  await replay('v3', h2);
  // ...but not with v1 runs, and neither is a change made without a patch.
  await assert.rejects(replay('v3', h1), DeterminismViolationError);
  await assert.rejects(replay('unpatched', h1), DeterminismViolationError);
});
