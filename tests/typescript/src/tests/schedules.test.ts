// Guide: schedules — create, describe, trigger, pause/unpause, list, delete.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client, Connection, ScheduleHandle, ScheduleNotFoundError, ScheduleOverlapPolicy } from '@temporalio/client';
import * as wf from '../workflows/scheduled';
import { connectClient, eventName, historyEvents, RunningWorker, startWorker, test, uid, waitUntil, HOOK, shutdown } from '../support';

const taskQueue = uid('ts-schedules');
let client: Client;
let connection: Connection;
let worker: RunningWorker;
const created: ScheduleHandle[] = [];

before(async () => {
  ({ client, connection } = await connectClient());
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/scheduled') });
}, HOOK);

async function deleteCreatedSchedules(): Promise<void> {
  for (const handle of created) {
    try {
      await handle.delete();
    } catch {
      // already deleted
    }
  }
}

after(() => shutdown(deleteCreatedSchedules, () => worker?.stop(), () => connection?.close()), HOOK);

async function listedScheduleIds(): Promise<string[]> {
  const ids: string[] = [];
  for await (const summary of client.schedule.list()) ids.push(summary.scheduleId);
  return ids;
}

test('create and describe a schedule', async () => {
  const scheduleId = uid('sched-describe');
  const workflowId = uid('sched-describe-wf');
  const handle = await client.schedule.create({
    scheduleId,
    spec: { intervals: [{ every: '1 hour' }] },
    action: { type: 'startWorkflow', workflowType: wf.scheduledReport, args: ['hourly'], taskQueue, workflowId },
    policies: { overlap: ScheduleOverlapPolicy.SKIP },
    state: { paused: true, note: 'created paused by the test' },
    memo: { owner: 'ts-tests' },
  });
  created.push(handle);
  assert.equal(handle.scheduleId, scheduleId);

  const description = await handle.describe();
  assert.equal(description.scheduleId, scheduleId);
  assert.deepEqual(description.spec.intervals?.map((i) => i.every), [3_600_000]);
  assert.equal(description.action.type, 'startWorkflow');
  assert.equal(description.action.workflowType, 'scheduledReport');
  assert.equal(description.action.taskQueue, taskQueue);
  assert.equal(description.action.workflowId, workflowId);
  assert.deepEqual(description.action.args, ['hourly']);
  assert.equal(description.policies.overlap, ScheduleOverlapPolicy.SKIP);
  assert.equal(description.state.paused, true);
  assert.equal(description.state.note, 'created paused by the test');
  assert.deepEqual(description.memo, { owner: 'ts-tests' });
  assert.equal(description.info.numActionsTaken, 0);
  assert.deepEqual(description.info.recentActions, []);
  const next = description.info.nextActionTimes;
  assert.ok(next.length >= 2, 'upcoming action times are computed');
  assert.equal(next[1].getTime() - next[0].getTime(), 3_600_000);
  assert.equal(next[0].getTime() % 3_600_000, 0, 'intervals are aligned to the epoch');
});

test('trigger runs the action now; pause, unpause, list and delete', async () => {
  const scheduleId = uid('sched-trigger');
  const workflowId = uid('sched-trigger-wf');
  const handle = await client.schedule.create({
    scheduleId,
    spec: { intervals: [{ every: '1 hour' }] },
    action: { type: 'startWorkflow', workflowType: wf.scheduledReport, args: ['manual'], taskQueue, workflowId },
    state: { paused: true },
  });
  created.push(handle);

  // Trigger works even on a paused schedule.
  await handle.trigger();
  const description = await waitUntil('the triggered action', async () => {
    const d = await handle.describe();
    return d.info.recentActions.length > 0 ? d : undefined;
  });
  assert.equal(description.info.numActionsTaken, 1);
  const action = description.info.recentActions[0].action;
  assert.equal(action.type, 'startWorkflow');
  const startedId = action.workflow.workflowId;
  assert.ok(startedId.startsWith(workflowId), `${startedId} starts with ${workflowId}: the server appends the time`);

  const started = client.workflow.getHandle(startedId, action.workflow.firstExecutionRunId);
  assert.equal(await started.result(), `report manual for ${startedId}`);
  const wfDescription = await started.describe();
  assert.equal(wfDescription.type, 'scheduledReport');
  assert.equal(wfDescription.taskQueue, taskQueue);
  const names = (await historyEvents(started)).map(eventName);
  assert.equal(names[0], 'WorkflowExecutionStarted');
  assert.equal(names[names.length - 1], 'WorkflowExecutionCompleted');

  await handle.unpause('resumed by the test');
  let state = (await handle.describe()).state;
  assert.equal(state.paused, false);
  assert.equal(state.note, 'resumed by the test');
  await handle.pause('paused by the test');
  state = (await handle.describe()).state;
  assert.equal(state.paused, true);
  assert.equal(state.note, 'paused by the test');

  // The list is served from visibility, which may lag.
  await waitUntil(`${scheduleId} listed`, async () => (await listedScheduleIds()).includes(scheduleId));
  for await (const summary of client.schedule.list()) {
    if (summary.scheduleId !== scheduleId) continue;
    assert.equal(summary.action?.workflowType, 'scheduledReport');
    assert.deepEqual(summary.spec?.intervals?.map((i) => i.every), [3_600_000]);
  }

  await handle.delete();
  await assert.rejects(handle.describe(), ScheduleNotFoundError);
  await waitUntil(`${scheduleId} unlisted`, async () => !(await listedScheduleIds()).includes(scheduleId));
});

test('an interval schedule takes actions on its own', async () => {
  const scheduleId = uid('sched-fires');
  const handle = await client.schedule.create({
    scheduleId,
    spec: { intervals: [{ every: '2 seconds' }] },
    action: { type: 'startWorkflow', workflowType: wf.scheduledReport, args: ['fast'], taskQueue, workflowId: uid('sched-fires-wf') },
  });
  created.push(handle);
  const description = await waitUntil(
    'two scheduled actions',
    async () => {
      const d = await handle.describe();
      return d.info.numActionsTaken >= 2 ? d : undefined;
    },
    20_000,
    500,
  );
  await handle.pause();
  const actions = description.info.recentActions.slice(0, 2);
  for (const a of actions) {
    assert.equal(a.scheduledAt.getTime() % 2000, 0, 'scheduled on the 2 s grid');
    const id = a.action.workflow.workflowId;
    assert.equal(await client.workflow.getHandle(id).result(), `report fast for ${id}`);
  }
  assert.equal(actions[1].scheduledAt.getTime() - actions[0].scheduledAt.getTime(), 2000);
  await handle.delete();
});
