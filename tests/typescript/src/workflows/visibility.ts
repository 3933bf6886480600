import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { condition, defineSignal, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';

export const TAG = defineSearchAttributeKey('DuraTsTag', SearchAttributeType.KEYWORD);
export const COUNT = defineSearchAttributeKey('DuraTsCount', SearchAttributeType.INT);

export const releaseSignal = defineSignal('release');

/** Optionally upserts search attributes, optionally waits for `release`, returns what it sees. */
export async function listed(opts: { upsertTag?: string; upsertCount?: number; wait?: boolean }): Promise<{ tag?: string; count?: number }> {
  let released = false;
  setHandler(releaseSignal, () => {
    released = true;
  });
  const updates = [];
  if (opts.upsertTag !== undefined) updates.push({ key: TAG, value: opts.upsertTag });
  if (opts.upsertCount !== undefined) updates.push({ key: COUNT, value: opts.upsertCount });
  if (updates.length) upsertSearchAttributes(updates);
  if (opts.wait) await condition(() => released);
  const attrs = workflowInfo().typedSearchAttributes;
  return { tag: attrs.get(TAG), count: attrs.get(COUNT) };
}

/** A second workflow type, for filtering by WorkflowType. */
export async function otherListed(): Promise<string> {
  return 'other';
}
