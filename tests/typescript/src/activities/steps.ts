export async function oldStep(): Promise<string> {
  return 'old';
}

export async function newStep(): Promise<string> {
  return 'new';
}
