// Guide: search attributes and listing workflows (client.workflow.list with a query).
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import * as wf from '../workflows/visibility';
import {
  connectClient,
  eventName,
  eventsNamed,
  historyEvents,
  listIds,
  listIdsEventually,
  NAMESPACE,
  RunningWorker,
  startWorker,
  test,
  terminateQuietly,
  uid,
  waitUntil,
  HOOK,
  shutdown,
} from '../support';

const IndexedValueType = temporal.api.enums.v1.IndexedValueType;
const taskQueue = uid('ts-visibility');
let client: Client;
let connection: Connection;
let worker: RunningWorker;

/** Registers the custom search attributes (once per server; ALREADY_EXISTS is fine). */
async function registerSearchAttributes(): Promise<void> {
  const wanted = {
    [wf.TAG.name]: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    [wf.COUNT.name]: IndexedValueType.INDEXED_VALUE_TYPE_INT,
  };
  const existing = await connection.operatorService.listSearchAttributes({ namespace: NAMESPACE });
  const missing = Object.fromEntries(Object.entries(wanted).filter(([name]) => !(name in (existing.customAttributes ?? {}))));
  if (Object.keys(missing).length) {
    try {
      await connection.operatorService.addSearchAttributes({ namespace: NAMESPACE, searchAttributes: missing });
    } catch (err: any) {
      if (err?.code !== 6 /* gRPC ALREADY_EXISTS */) throw err;
    }
  }
  await waitUntil('search attributes registered', async () => {
    const listed = await connection.operatorService.listSearchAttributes({ namespace: NAMESPACE });
    return Object.entries(wanted).every(([name, type]) => listed.customAttributes?.[name] === type);
  });
}

before(async () => {
  ({ client, connection } = await connectClient());
  await registerSearchAttributes();
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/visibility') });
}, HOOK);

after(() => shutdown(() => worker?.stop(), () => connection?.close()), HOOK);

test('search attributes registered through the operator service are listed with their types', async () => {
  const listed = await connection.operatorService.listSearchAttributes({ namespace: NAMESPACE });
  assert.equal(listed.customAttributes?.[wf.TAG.name], IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD);
  assert.equal(listed.customAttributes?.[wf.COUNT.name], IndexedValueType.INDEXED_VALUE_TYPE_INT);
  assert.equal(listed.systemAttributes?.['WorkflowType'], IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD);
});

test('search attributes set at start and upserted by the workflow', async () => {
  const startTag = uid('tag-start');
  const upsertTag = uid('tag-upsert');
  const handle = await client.workflow.start(wf.listed, {
    taskQueue,
    workflowId: uid('sa'),
    args: [{ upsertTag, upsertCount: 42 }],
    typedSearchAttributes: [{ key: wf.TAG, value: startTag }],
  });
  assert.deepEqual(await handle.result(), { tag: upsertTag, count: 42 });

  const events = await historyEvents(handle);
  const startFields = events[0].workflowExecutionStartedEventAttributes!.searchAttributes!.indexedFields!;
  assert.deepEqual(defaultPayloadConverter.fromPayload(startFields[wf.TAG.name]), startTag);
  const upserts = eventsNamed(events, 'UpsertWorkflowSearchAttributes');
  assert.equal(upserts.length, 1);
  const fields = upserts[0].upsertWorkflowSearchAttributesEventAttributes!.searchAttributes!.indexedFields!;
  assert.deepEqual(defaultPayloadConverter.fromPayload(fields[wf.TAG.name]), upsertTag);
  assert.deepEqual(defaultPayloadConverter.fromPayload(fields[wf.COUNT.name]), 42);
  assert.ok(events.map(eventName).indexOf('UpsertWorkflowSearchAttributes') < events.map(eventName).indexOf('WorkflowExecutionCompleted'));

  const description = await handle.describe();
  assert.equal(description.typedSearchAttributes.get(wf.TAG), upsertTag);
  assert.equal(description.typedSearchAttributes.get(wf.COUNT), 42);

  // Listing by the upserted value finds it; by the start value no longer does.
  await listIdsEventually(client, `${wf.TAG.name} = '${upsertTag}'`, [handle.workflowId]);
  assert.deepEqual(await listIds(client, `${wf.TAG.name} = '${startTag}'`), []);
  await listIdsEventually(client, `${wf.COUNT.name} = 42 AND TaskQueue = '${taskQueue}'`, [handle.workflowId]);
  await listIdsEventually(client, `${wf.COUNT.name} > 41 AND ${wf.TAG.name} = '${upsertTag}'`, [handle.workflowId]);
  assert.deepEqual(await listIds(client, `${wf.COUNT.name} > 42 AND ${wf.TAG.name} = '${upsertTag}'`), []);
});

test('list by workflow type and task queue returns execution info', async () => {
  const ids = [uid('list-a'), uid('list-b')];
  for (const id of ids) await client.workflow.execute(wf.listed, { taskQueue, workflowId: id, args: [{}] });
  const otherId = uid('list-other');
  await client.workflow.execute(wf.otherListed, { taskQueue, workflowId: otherId });

  const query = `WorkflowType = 'listed' AND TaskQueue = '${taskQueue}' AND WorkflowId IN ('${ids[0]}', '${ids[1]}')`;
  await listIdsEventually(client, query, ids);
  for await (const info of client.workflow.list({ query })) {
    assert.equal(info.type, 'listed');
    assert.equal(info.taskQueue, taskQueue);
    assert.equal(info.status.name, 'COMPLETED');
    assert.ok(info.runId);
    assert.ok(info.startTime instanceof Date);
    assert.ok(info.closeTime instanceof Date);
    assert.ok(info.closeTime.getTime() >= info.startTime.getTime());
  }
  await listIdsEventually(client, `WorkflowType = 'otherListed' AND TaskQueue = '${taskQueue}'`, [otherId]);
});

test('list by execution status sees running and completed runs', async () => {
  const tag = uid('status');
  const done = await client.workflow.start(wf.listed, { taskQueue, workflowId: uid('done'), args: [{}], typedSearchAttributes: [{ key: wf.TAG, value: tag }] });
  await done.result();
  const running = await client.workflow.start(wf.listed, {
    taskQueue,
    workflowId: uid('running'),
    args: [{ wait: true }],
    typedSearchAttributes: [{ key: wf.TAG, value: tag }],
  });
  try {
    const scope = `${wf.TAG.name} = '${tag}'`;
    await listIdsEventually(client, scope, [done.workflowId, running.workflowId]);
    await listIdsEventually(client, `ExecutionStatus = 'Running' AND ${scope}`, [running.workflowId]);
    await listIdsEventually(client, `ExecutionStatus = 'Completed' AND ${scope}`, [done.workflowId]);
    assert.equal((await client.workflow.count(scope)).count, 2);

    await running.signal(wf.releaseSignal);
    await running.result();
    await listIdsEventually(client, `ExecutionStatus = 'Completed' AND ${scope}`, [done.workflowId, running.workflowId]);
    await listIdsEventually(client, `ExecutionStatus = 'Running' AND ${scope}`, []);
  } finally {
    await terminateQuietly(running);
  }
});

test('list by start time', async () => {
  const before = new Date(Date.now() - 60_000).toISOString();
  const id = uid('by-time');
  await client.workflow.execute(wf.listed, { taskQueue, workflowId: id, args: [{}] });
  await listIdsEventually(client, `StartTime > '${before}' AND WorkflowId = '${id}'`, [id]);
  const later = new Date(Date.now() + 3_600_000).toISOString();
  assert.deepEqual(await listIds(client, `StartTime > '${later}' AND WorkflowId = '${id}'`), []);
});
