// Guide: testing with a time-skipping environment. `TestWorkflowEnvironment.createTimeSkipping`
// launches the test server itself, here dura through `existing-path` (it is run as
// `<path> <port>`, as the SDK runs Temporal's Java test server). Only with dura: the Java server
// is a download, which this machine cannot make, so against the real dev server the file is
// skipped.
import assert from 'node:assert/strict';
import { test as nodeTest } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import * as wf from '../workflows/timers';
import { test, uid } from '../support';

const TEST_SERVER = process.env.DURA_TEST_SERVER;
const HOUR = 3600_000;
/** "Finishes at once": far below every skipped span, with room for a loaded debug build. */
const SKIPPED_WITHIN_MS = 5_000;

async function withEnvironment(fn: (env: TestWorkflowEnvironment) => Promise<void>): Promise<void> {
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: TEST_SERVER! } },
  });
  try {
    await fn(env);
  } finally {
    await env.teardown();
  }
}

async function sleepsFor(env: TestWorkflowEnvironment, ms: number): Promise<{ slept: number; wallMs: number }> {
  const taskQueue = uid('ts-skip');
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: require.resolve('../workflows/timers'),
  });
  const started = Date.now();
  const slept = await worker.runUntil(
    env.client.workflow.execute(wf.sleeper, { taskQueue, workflowId: uid('skip'), args: [ms] }),
  );
  return { slept, wallMs: Date.now() - started };
}

if (!TEST_SERVER) {
  nodeTest('time-skipping environment (needs DURA_TEST_SERVER; run.sh dura sets it)', { skip: true }, () => {});
} else {
  test('a one-hour and a thirty-day sleep finish at once', async () => {
    await withEnvironment(async (env) => {
      assert.ok(env.supportsTimeSkipping);
      for (const ms of [HOUR, 30 * 24 * HOUR]) {
        const { slept, wallMs } = await sleepsFor(env, ms);
        assert.ok(slept >= ms, `workflow time moved ${slept} ms of ${ms}`);
        assert.ok(wallMs < SKIPPED_WITHIN_MS, `a ${ms} ms sleep took ${wallMs} ms of wall time`);
      }
    });
  });

  test('env.sleep moves the test server clock', async () => {
    await withEnvironment(async (env) => {
      const before = await env.currentTimeMs();
      assert.ok(Math.abs(before - Date.now()) < 60_000, 'the clock starts at the wall time');
      const started = Date.now();
      await env.sleep('2 days');
      const moved = (await env.currentTimeMs()) - before;
      assert.ok(moved >= 48 * HOUR, `the clock moved ${moved} ms`);
      assert.ok(Date.now() - started < SKIPPED_WITHIN_MS, 'env.sleep returned at once');
    });
  });
}
