// The guest side of TensorBoard's iframe-plugin message API, written for this dashboard.
//
// TensorBoard's host page listens for the string "experimental.bootstrap" posted by a plugin
// iframe together with one MessagePort; from then on both sides exchange JSON strings
// {type, id, payload, error, isReply} over that port, each request answered by a reply with the
// same id. The host offers GetRuns (every run name of the experiment — not the run selector's
// selection), GetURLPluginData (the host URL's `p.<plugin>.<key>` hash entries) and broadcasts
// RunsChanged and DataReloaded (which it expects to be answered).

export const GET_RUNS = "experimental.GetRuns";
export const GET_URL_DATA = "experimental.GetURLPluginData";
export const RUNS_CHANGED = "experimental.RunsChanged";
export const DATA_RELOADED = "experimental.DataReloaded";

/**
 * Connect to the TensorBoard page this document is framed in.
 * @param {Window} win this document's window
 * @returns {{send: function(string, *=, number=): Promise<*>, on: function(string, function(*): *): void} | null}
 *   null when the page is not inside a frame (opened on its own: no host to talk to)
 */
export function connectHost(win = window) {
  if (win.parent === win) return null;
  const channel = new MessageChannel();
  const port = channel.port1;
  const waiting = new Map();
  const handlers = new Map();
  let nextId = 0;
  const post = (msg) => port.postMessage(JSON.stringify(msg));

  port.onmessage = async (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (_) {
      return;                                    // not ours
    }
    if (msg.isReply) {
      const wait = waiting.get(msg.id);
      if (!wait) return;
      waiting.delete(msg.id);
      if (msg.error) wait.reject(new Error(String(msg.error)));
      else wait.resolve(msg.payload);
      return;
    }
    let payload = null;
    let error = null;
    const handler = handlers.get(msg.type);
    if (handler) {
      try {
        payload = (await handler(msg.payload)) ?? null;
      } catch (e) {
        error = String(e);
      }
    }
    post({type: msg.type, id: msg.id, payload, error, isReply: true});
  };
  // Same origin as the host (TensorBoard serves both), so the port goes to that origin only.
  win.parent.postMessage("experimental.bootstrap", win.location.origin, [channel.port2]);

  return {
    send(type, payload = null, timeoutMs = 3000) {
      const id = nextId++;
      const answer = new Promise((resolve, reject) => {
        waiting.set(id, {resolve, reject});
        setTimeout(() => {
          if (waiting.delete(id)) reject(new Error(`${type}: no answer from TensorBoard`));
        }, timeoutMs);
      });
      post({type, id, payload, error: null, isReply: false});
      return answer;
    },
    on(type, handler) {
      handlers.set(type, handler);
    },
  };
}
