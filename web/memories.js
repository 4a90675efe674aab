// What the model stored with its memory tools: listed newest first (paged), searched, deleted.

import { h, clear, when, showDialog } from "./dom.js";

export async function openMemories(connection) {
  const list = h("ul", { class: "memory-list", "aria-live": "polite" });
  const query = h("input", { id: "memory-query", type: "search", placeholder: "Search memories", autocomplete: "off" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const more = h("button", { type: "button", class: "link", hidden: true }, "Show more");
  const search = h("form", { class: "search" }, h("label", { for: "memory-query" }, "Search memories"), query);
  const dialog = h("dialog", { "aria-labelledby": "memories-heading" },
    h("h2", { id: "memories-heading" }, "Memories"),
    h("p", {}, "What the model chose to remember across conversations. Delete what it should forget."),
    search, error, list, more,
    h("form", { method: "dialog", class: "actions" }, h("button", { type: "submit" }, "Close")));
  document.body.appendChild(dialog);

  let cursor = null;
  const load = async (append) => {
    const payload = { limit: 50 };
    const text = query.value.trim();
    if (text) payload.query = text;
    else if (append && cursor) payload.cursor = cursor;
    try {
      const chunk = await connection.request("list_memories", payload);
      error.hidden = true;
      if (!append) clear(list);
      cursor = chunk.metadata.next_cursor;
      more.hidden = !cursor;
      for (const memory of chunk.metadata.memories) list.appendChild(item(memory));
      if (!list.childElementCount) list.appendChild(h("li", {}, text ? "No memory matches." : "No memories yet."));
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  };
  const item = (memory) => {
    const remove = h("button", { type: "button", "aria-label": `Delete memory ${memory.id}` }, "Delete");
    const row = h("li", {}, h("span", { class: "text" }, memory.text,
      h("span", { class: "meta" }, [when(memory.created_at), ...(memory.tags || []).map((t) => `#${t}`),
        memory.score !== undefined ? `score ${memory.score.toFixed(2)}` : null].filter(Boolean).join(" · "))), remove);
    remove.addEventListener("click", async () => {
      try {
        await connection.request("delete_memory", { memory_id: memory.id });
        row.remove();
      } catch (failure) {
        error.textContent = failure.message;
        error.hidden = false;
      }
    });
    return row;
  };
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    load(false);
  });
  more.addEventListener("click", () => load(true));
  await load(false);
  await showDialog(dialog);
  dialog.remove();
}
