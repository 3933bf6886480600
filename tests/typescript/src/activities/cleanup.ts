import { CancelledFailure, heartbeat, sleep } from '@temporalio/activity';

export const seen: string[] = [];

export async function cleanup(what: string): Promise<string> {
  seen.push(`cleanup:${what}`);
  return `cleaned ${what}`;
}

/** Heartbeats until cancelled (or 30 s pass). */
export async function longHeartbeating(key: string): Promise<string> {
  seen.push(`start:${key}`);
  try {
    for (let i = 0; i < 300; i++) {
      heartbeat(i);
      await sleep(100);
    }
  } catch (err) {
    if (err instanceof CancelledFailure) seen.push(`cancelled:${key}`);
    throw err;
  }
  return 'finished';
}
