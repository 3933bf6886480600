export async function composeGreeting(greeting: string, name: string): Promise<string> {
  return `${greeting}, ${name}!`;
}
