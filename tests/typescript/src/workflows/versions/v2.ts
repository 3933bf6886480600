// Version 2: the change is guarded by patched(), so runs started on v1 keep the old path.
import { patched } from '@temporalio/workflow';
import { newStep, oldStep, PATCH_ID, waitForFinish } from './common';

export async function versioned(): Promise<string> {
  const result = patched(PATCH_ID) ? await newStep() : await oldStep();
  await waitForFinish();
  return result;
}
