/**
 * `callbridge <command>`: one entry point for every job. Each command lives
 * in its own module, loaded only when asked for, and returns an exit code.
 */
import { processIO, type CliIO } from './io.js';


const USAGE = `usage: callbridge <command> [options]

commands:
  serve                      run the relay server (needs OPENAI_API_KEY, or OPENAI_BASE_URL for a stand-in)
  demo [--calls N]           run the server with the built-in model stand-in and place simulated calls
  transcode --from F --to F [IN] [OUT]
                             convert audio through the call transcoder (ulaw8k, alaw8k, pcm8k, pcm24k; .wav by extension)
  calls list [--since T] [--json]
  calls show <CallSid> [--json]
                             read the call records
  agent check FILE [--json]  check an agent file and print what the model is given (tools, transfer targets, policies)
  call <+E164> [--agent NAME|FILE] [--context JSON] [--server URL]
                             place an outbound call through a running server (POST /calls, ADMIN_TOKEN)
`;

type Command = (args: string[], io: CliIO) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  transcode: async () => (await import('./transcode.js')).run,
  calls: async () => (await import('./calls.js')).run,
  serve: async () => (await import('./serve.js')).run,
  demo: async () => (await import('./demo.js')).run,
  call: async () => (await import('./call.js')).run,
  agent: async () => (await import('./agent.js')).run,
};

export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    (name ? io.stdout : io.stderr).write(USAGE);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    io.stderr.write(`callbridge: unknown command '${name}'\n${USAGE}`);
    return 2;
  }
  try {
    return await (await load())(rest, io);
  } catch (err) {
    io.stderr.write(`callbridge ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
