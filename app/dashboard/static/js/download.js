// The "Download" button of a checkpoint: its ZIP through fetch (with the key) → blob → object URL.
import { checkpointDownloadUrl, download } from "./api.js";
import { h } from "./dom.js";

export function downloadButton(checkpointId, { id = "download-checkpoint", text = "Download", onError } = {}) {
  const button = h("button", { type: "button", id, class: "download", dataset: { checkpoint: checkpointId },
                               title: `Download checkpoint ${checkpointId} as a ZIP (loadable with transformers)` }, text);
  button.addEventListener("click", async () => {
    button.disabled = true;
    const was = button.textContent;
    button.textContent = "Downloading…";
    try {
      await download(checkpointDownloadUrl(checkpointId), `${checkpointId}.zip`);
    } catch (err) {
      if (onError) onError(err); else throw err;
    } finally {
      button.disabled = false;
      button.textContent = was;
    }
  });
  return button;
}
