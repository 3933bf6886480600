import { condition, defineSignal, proxyActivities, setHandler, sleep } from '@temporalio/workflow';
import type * as acts from '../activities/hello';

const { composeGreeting } = proxyActivities<typeof acts>({ startToCloseTimeout: '10s' });
export const nameSignal = defineSignal<[string]>('name');

/** A workflow with an activity, a timer and a signal, for the replayer. */
export async function replayMe(greeting: string): Promise<string> {
  let name: string | undefined;
  setHandler(nameSignal, (n) => {
    name = n;
  });
  await sleep(100);
  await condition(() => name !== undefined);
  return await composeGreeting(greeting, name!);
}
