// Starts fauxqs, on loopback unless told otherwise. Its stock command binds
// 0.0.0.0; we never want a test server reachable from outside this machine.
//
// Environment: SQS_SERVER_PORT (0, the default, picks a free port);
// SQS_SERVER_HOST (127.0.0.1, the default; the compose stack's container
// sets 0.0.0.0 so that the other containers reach it).
// Prints "listening <port>" on stdout once it accepts connections, and exits
// when its standard input closes, so a parent that dies (even by SIGKILL)
// never leaves an orphan server behind.
import { buildApp } from "fauxqs";

const port = Number.parseInt(process.env.SQS_SERVER_PORT ?? "0", 10);
const host = process.env.SQS_SERVER_HOST ?? "127.0.0.1";
const app = buildApp({ logger: false, defaultRegion: "us-east-1" });

try {
  await app.listen({ port, host });
} catch (err) {
  process.stderr.write(`sqs-server: listen on ${host}:${port}: ${err.message}\n`);
  process.exit(1);
}
process.stdout.write(`listening ${app.server.address().port}\n`);

const stop = async () => {
  try {
    await app.close();
  } finally {
    process.exit(0);
  }
};
if (process.env.SQS_SERVER_WATCH_STDIN !== "0") {
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
