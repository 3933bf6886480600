// Version 3: no v1 runs are left, so the old path is removed and the patch deprecated.
import { deprecatePatch } from '@temporalio/workflow';
import { newStep, PATCH_ID, waitForFinish } from './common';

export async function versioned(): Promise<string> {
  deprecatePatch(PATCH_ID);
  const result = await newStep();
  await waitForFinish();
  return result;
}
