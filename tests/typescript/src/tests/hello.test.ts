// Guide: Hello World.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import * as activities from '../activities/hello';
import { helloActivity, helloWorkflow } from '../workflows/hello';
import { connectClient, eventNames, historyEvents, RunningWorker, startWorker, test, uid, HOOK, shutdown } from '../support';

const taskQueue = uid('ts-hello');
let client: Client;
let connection: Connection;
let worker: RunningWorker;

before(async () => {
  ({ client, connection } = await connectClient());
  worker = await startWorker({ taskQueue, workflowsPath: require.resolve('../workflows/hello'), activities });
}, HOOK);

after(() => shutdown(() => worker?.stop(), () => connection?.close()), HOOK);

test('hello workflow returns its result and records the minimal history', async () => {
  const workflowId = uid('hello-wf');
  const handle = await client.workflow.start(helloWorkflow, { taskQueue, workflowId, args: ['World'] });
  assert.equal(await handle.result(), 'Hello, World!');

  const events = await historyEvents(handle);
  assert.deepEqual(await eventNames(handle), [
    'WorkflowExecutionStarted',
    'WorkflowTaskScheduled',
    'WorkflowTaskStarted',
    'WorkflowTaskCompleted',
    'WorkflowExecutionCompleted',
  ]);
  const started = events[0].workflowExecutionStartedEventAttributes!;
  assert.equal(started.workflowType?.name, 'helloWorkflow');
  assert.equal(started.taskQueue?.name, taskQueue);
  assert.equal(defaultPayloadConverter.fromPayload(started.input!.payloads![0]), 'World');
  const completed = events[4].workflowExecutionCompletedEventAttributes!;
  assert.equal(defaultPayloadConverter.fromPayload(completed.result!.payloads![0]), 'Hello, World!');

  const description = await handle.describe();
  assert.equal(description.status.name, 'COMPLETED');
  assert.equal(description.type, 'helloWorkflow');
  assert.equal(description.taskQueue, taskQueue);
  assert.equal(description.workflowId, workflowId);
  assert.equal(description.runId, handle.firstExecutionRunId);
});

test('hello activity: workflow calls one activity', async () => {
  const result = await client.workflow.execute(helloActivity, { taskQueue, workflowId: uid('hello-act'), args: ['Temporal'] });
  assert.equal(result, 'Hello, Temporal!');
});

test('hello activity: history shows the activity scheduled, started and completed', async () => {
  const handle = await client.workflow.start(helloActivity, { taskQueue, workflowId: uid('hello-act'), args: ['History'] });
  assert.equal(await handle.result(), 'Hello, History!');
  const events = await historyEvents(handle);
  assert.deepEqual(await eventNames(handle), [
    'WorkflowExecutionStarted',
    'WorkflowTaskScheduled',
    'WorkflowTaskStarted',
    'WorkflowTaskCompleted',
    'ActivityTaskScheduled',
    'ActivityTaskStarted',
    'ActivityTaskCompleted',
    'WorkflowTaskScheduled',
    'WorkflowTaskStarted',
    'WorkflowTaskCompleted',
    'WorkflowExecutionCompleted',
  ]);
  const scheduled = events[4].activityTaskScheduledEventAttributes!;
  assert.equal(scheduled.activityType?.name, 'composeGreeting');
  assert.equal(scheduled.taskQueue?.name, taskQueue);
  assert.deepEqual(defaultPayloadConverter.fromPayload(scheduled.input!.payloads![0]), 'Hello');
  const startedAttrs = events[5].activityTaskStartedEventAttributes!;
  assert.equal(Number(startedAttrs.scheduledEventId), Number(events[4].eventId));
  assert.equal(startedAttrs.attempt, 1);
  const completedAttrs = events[6].activityTaskCompletedEventAttributes!;
  assert.equal(Number(completedAttrs.scheduledEventId), Number(events[4].eventId));
  assert.equal(defaultPayloadConverter.fromPayload(completedAttrs.result!.payloads![0]), 'Hello, History!');
});
