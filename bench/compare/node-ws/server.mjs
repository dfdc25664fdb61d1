// A plain broadcast server on npm `ws`, as its README shows one: every message
// a client sends goes to every other open client. No compression (ws's
// default for a server), no persistence, no acknowledgements.
//
//   node server.mjs [port]    (0 or none: a free port)
// prints `listening on ws://127.0.0.1:PORT` once bound.

import { WebSocket, WebSocketServer } from "ws";

const port = Number(process.argv[2] ?? 0);
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });

wss.on("connection", (ws) => {
  ws.on("error", () => undefined);
  ws.on("message", (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});

wss.on("listening", () => {
  const address = wss.address();
  console.log(`listening on ws://127.0.0.1:${typeof address === "string" ? address : address.port}`);
});

const stop = () => {
  wss.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
