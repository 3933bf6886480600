// The wrong way: the change made without a patch. Replaying v1 histories must fail.
import { newStep, waitForFinish } from './common';

export async function versioned(): Promise<string> {
  const result = await newStep();
  await waitForFinish();
  return result;
}
