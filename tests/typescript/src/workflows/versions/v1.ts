// Version 1: the original code.
import { oldStep, waitForFinish } from './common';

export async function versioned(): Promise<string> {
  const result = await oldStep();
  await waitForFinish();
  return result;
}
