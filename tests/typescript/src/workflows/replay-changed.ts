import { condition, defineSignal, proxyActivities, setHandler } from '@temporalio/workflow';
import type * as acts from '../activities/hello';

const { composeGreeting } = proxyActivities<typeof acts>({ startToCloseTimeout: '10s' });
export const nameSignal = defineSignal<[string]>('name');

/** Same as replay.ts but the timer was removed: incompatible with histories of the original. */
export async function replayMe(greeting: string): Promise<string> {
  let name: string | undefined;
  setHandler(nameSignal, (n) => {
    name = n;
  });
  await condition(() => name !== undefined);
  return await composeGreeting(greeting, name!);
}
