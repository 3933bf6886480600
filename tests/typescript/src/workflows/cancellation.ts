import { CancellationScope, isCancellation, proxyActivities, sleep } from '@temporalio/workflow';
import type * as acts from '../activities/cleanup';

const { cleanup, longHeartbeating } = proxyActivities<typeof acts>({
  startToCloseTimeout: '60s',
  heartbeatTimeout: '2s',
  cancellationType: 'WAIT_CANCELLATION_COMPLETED',
});

/**
 * Guide: cancellation scopes. Waits a long time; when the workflow is cancelled it runs a
 * cleanup activity in a non-cancellable scope and then lets the cancellation through.
 */
export async function cancellableWithCleanup(): Promise<string> {
  try {
    await sleep('1 day');
    return 'slept a whole day';
  } catch (err) {
    if (!isCancellation(err)) throw err;
    await CancellationScope.nonCancellable(() => cleanup('after-cancel'));
    throw err;
  }
}

/** CancellationScope.withTimeout cancels the activity inside it when the timer fires. */
export async function activityWithScopeTimeout(key: string): Promise<string> {
  try {
    await CancellationScope.withTimeout(1000, () => longHeartbeating(key));
    return 'activity finished';
  } catch (err) {
    return isCancellation(err) ? 'activity cancelled by scope timeout' : `unexpected: ${err}`;
  }
}

/** Cancelling an inner scope leaves the outer one running. */
export async function innerScopeCancelled(): Promise<string[]> {
  const log: string[] = [];
  const inner = new CancellationScope();
  const longTimer = inner.run(() => sleep('1 hour')).then(
    () => log.push('inner timer fired'),
    (err) => log.push(isCancellation(err) ? 'inner timer cancelled' : `inner error ${err}`),
  );
  await sleep(200);
  inner.cancel();
  await longTimer;
  await sleep(200);
  log.push('outer still running');
  return log;
}
