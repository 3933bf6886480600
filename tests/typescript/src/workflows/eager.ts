import { workflowInfo } from '@temporalio/workflow';

export async function eagerWorkflow(name: string): Promise<string> {
  return `eager ${name} attempt ${workflowInfo().attempt}`;
}
