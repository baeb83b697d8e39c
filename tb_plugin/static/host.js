// Messages from TensorBoard's host page (the page around the plugin's iframe).

/**
 * TensorBoard's host page announces data reloads over a MessageChannel that a plugin iframe
 * opens by posting "experimental.bootstrap" with a port (the protocol of TensorBoard's
 * experimental plugin API, messages are JSON {type, id, payload, error, isReply}).
 */
export function listenForReload(onReload) {
  if (window.parent === window) return;
  const channel = new MessageChannel();
  channel.port1.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!message || message.isReply) return;
    if (message.type === "experimental.DataReloaded") onReload();
    channel.port1.postMessage(
      JSON.stringify({ type: message.type, id: message.id, payload: null, error: null, isReply: true }),
    );
  };
  try {
    window.parent.postMessage("experimental.bootstrap", window.location.origin, [channel.port2]);
  } catch {
    // a cross-origin parent: polling alone keeps the view fresh
  }
}

