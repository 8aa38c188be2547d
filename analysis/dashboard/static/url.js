// The run filter in TensorBoard's URL: `#scalescope&p.scalescope.filter=REGEX`, TensorBoard's own
// namespace for a plugin's URL state (`p.<plugin>.<key>` in the hash).
//
// Read: GetURLPluginData answers from TensorBoard's parsed copy of the hash, which in TensorBoard 2.21
// is still empty right after a page load (it is parsed before the hash is switched on, and again only
// on a hashchange), so the host page's hash is also read directly (same origin). Write: the iframe API
// has no setter, so the key is replaced in the host page's URL with history.replaceState (no
// hashchange, so TensorBoard does not reload anything); when the host is not reachable, nothing is written.

export const KEY = "p.scalescope.filter";

function hostWindow() {
  try {
    const w = window.parent;
    void w.location.hash;        // throws when not same-origin
    return w;
  } catch (_) {
    return null;
  }
}

function parts(hash) {
  return hash.replace(/^#/, "").split("&").filter(Boolean);
}

/** The filter the host URL carries, or null when it has none. */
export function readFilter(fromHost) {
  if (fromHost && typeof fromHost.filter === "string") return fromHost.filter;
  const w = hostWindow();
  if (!w) return null;
  for (const part of parts(w.location.hash)) {
    const at = part.indexOf("=");
    if (at > 0 && decodeURIComponent(part.slice(0, at)) === KEY) return decodeURIComponent(part.slice(at + 1));
  }
  return null;
}

/** Put the filter into the host URL (or take it out when empty), leaving every other hash entry as it was. */
export function writeFilter(value) {
  const w = hostWindow();
  if (!w) return;
  const kept = parts(w.location.hash).filter((p) => !p.startsWith(`${KEY}=`));
  if (value) kept.push(`${KEY}=${encodeURIComponent(value)}`);
  const url = new URL(w.location.href);
  url.hash = kept.join("&");
  try {
    w.history.replaceState(w.history.state, "", url.toString());
  } catch (_) { /* the host refused: the filter still lives in this browser's storage */ }
}
