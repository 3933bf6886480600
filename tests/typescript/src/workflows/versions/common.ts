import { condition, defineSignal, proxyActivities, setHandler } from '@temporalio/workflow';
import type * as steps from '../../activities/steps';

export const PATCH_ID = 'use-new-step';
export const finishSignal = defineSignal('finish');
export const { oldStep, newStep } = proxyActivities<typeof steps>({ startToCloseTimeout: '10s' });

/** Every version waits for `finish` after its step, so a run can be carried over to new code. */
export async function waitForFinish(): Promise<void> {
  let finished = false;
  setHandler(finishSignal, () => {
    finished = true;
  });
  await condition(() => finished);
}
