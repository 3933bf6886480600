import { condition, defineSignal, setHandler, sleep } from '@temporalio/workflow';

/** Guide: timers — a durable sleep. Returns how long the workflow clock advanced. */
export async function sleeper(ms: number): Promise<number> {
  const start = Date.now();
  await sleep(ms);
  return Date.now() - start;
}

/** Two timers started in the same workflow task. */
export async function twoTimers(): Promise<string[]> {
  const fired: string[] = [];
  await Promise.all([
    sleep(1500).then(() => fired.push('long')),
    sleep(500).then(() => fired.push('short')),
  ]);
  return fired;
}

export const releaseSignal = defineSignal('release');

/** Waits for a signal with a deadline: true if the signal came first, false on timeout. */
export async function waitWithDeadline(timeoutMs: number): Promise<boolean> {
  let released = false;
  setHandler(releaseSignal, () => {
    released = true;
  });
  return await condition(() => released, timeoutMs);
}
