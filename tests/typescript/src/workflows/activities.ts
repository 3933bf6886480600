import { CancellationScope, condition, defineSignal, proxyActivities, setHandler } from '@temporalio/workflow';
import type * as acts from '../activities/activities';
import { describeFailure, FailureDescription } from './failures';

export async function startToCloseOnly(): Promise<acts.SelfDescription> {
  const { describeSelf } = proxyActivities<typeof acts>({ startToCloseTimeout: '7s' });
  return await describeSelf();
}

export async function scheduleToCloseOnly(): Promise<acts.SelfDescription> {
  const { describeSelf } = proxyActivities<typeof acts>({ scheduleToCloseTimeout: '8s' });
  return await describeSelf();
}

export async function allFourTimeouts(): Promise<acts.SelfDescription> {
  const { describeSelf } = proxyActivities<typeof acts>({
    scheduleToCloseTimeout: '20s',
    scheduleToStartTimeout: '10s',
    startToCloseTimeout: '9s',
    heartbeatTimeout: '3s',
  });
  return await describeSelf();
}

export async function startToCloseTimesOut(key: string): Promise<FailureDescription> {
  const { sleepFor } = proxyActivities<typeof acts>({ startToCloseTimeout: '1s', retry: { maximumAttempts: 1 } });
  try {
    await sleepFor(key, 4000);
    return { name: 'none', message: 'activity did not time out' };
  } catch (err) {
    return describeFailure(err);
  }
}

export async function scheduleToCloseTimesOut(key: string): Promise<FailureDescription> {
  const { sleepFor } = proxyActivities<typeof acts>({ scheduleToCloseTimeout: '1s' });
  try {
    await sleepFor(key, 4000);
    return { name: 'none', message: 'activity did not time out' };
  } catch (err) {
    return describeFailure(err);
  }
}

/** The activity goes to a task queue nobody polls, so it is never started. */
export async function scheduleToStartTimesOut(idleQueue: string): Promise<FailureDescription> {
  const { echo } = proxyActivities<typeof acts>({ taskQueue: idleQueue, scheduleToStartTimeout: '1s', startToCloseTimeout: '5s' });
  try {
    await echo('never');
    return { name: 'none', message: 'activity did not time out' };
  } catch (err) {
    return describeFailure(err);
  }
}

export async function retriesWithBackoff(key: string): Promise<number> {
  const { failUntil } = proxyActivities<typeof acts>({
    startToCloseTimeout: '5s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
  });
  return await failUntil(key, 3);
}

export async function retriesExhausted(key: string): Promise<FailureDescription> {
  const { alwaysFail } = proxyActivities<typeof acts>({
    startToCloseTimeout: '5s',
    retry: { initialInterval: '100ms', backoffCoefficient: 1, maximumAttempts: 3 },
  });
  try {
    await alwaysFail(key, 'Transient');
    return { name: 'none', message: 'activity did not fail' };
  } catch (err) {
    return describeFailure(err);
  }
}

export async function nonRetryableErrorType(key: string): Promise<FailureDescription> {
  const { alwaysFail } = proxyActivities<typeof acts>({
    startToCloseTimeout: '5s',
    retry: { initialInterval: '100ms', maximumAttempts: 5, nonRetryableErrorTypes: ['Fatal'] },
  });
  try {
    await alwaysFail(key, 'Fatal');
    return { name: 'none', message: 'activity did not fail' };
  } catch (err) {
    return describeFailure(err);
  }
}

export async function heartbeatTimeoutThenRetry(key: string): Promise<{ attempt: number; details: unknown }> {
  const { heartbeatThenStall } = proxyActivities<typeof acts>({
    startToCloseTimeout: '10s',
    heartbeatTimeout: '1s',
    retry: { initialInterval: '100ms', maximumAttempts: 2 },
  });
  return await heartbeatThenStall(key, 4000);
}

export async function heartbeatTimeoutFails(key: string): Promise<FailureDescription> {
  const { heartbeatThenStall } = proxyActivities<typeof acts>({
    startToCloseTimeout: '10s',
    heartbeatTimeout: '1s',
    retry: { maximumAttempts: 1 },
  });
  try {
    await heartbeatThenStall(key, 4000);
    return { name: 'none', message: 'activity did not time out' };
  } catch (err) {
    return describeFailure(err);
  }
}

export const cancelActivitySignal = defineSignal('cancelActivity');

/** Starts a long heartbeating activity and cancels it when signalled. */
export async function cancelRunningActivity(key: string): Promise<FailureDescription> {
  const { heartbeatUntilCancelled } = proxyActivities<typeof acts>({
    startToCloseTimeout: '60s',
    heartbeatTimeout: '2s',
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
  });
  let cancelRequested = false;
  setHandler(cancelActivitySignal, () => {
    cancelRequested = true;
  });
  const scope = new CancellationScope();
  const running = scope.run(() => heartbeatUntilCancelled(key));
  await condition(() => cancelRequested);
  scope.cancel();
  try {
    await running;
    return { name: 'none', message: 'activity was not cancelled' };
  } catch (err) {
    return describeFailure(err);
  }
}

export async function parallelActivities(key: string, count: number): Promise<number[]> {
  const { meetAll } = proxyActivities<typeof acts>({ startToCloseTimeout: '30s', retry: { maximumAttempts: 1 } });
  return await Promise.all(Array.from({ length: count }, (_, i) => meetAll(key, i, count, 20_000)));
}
