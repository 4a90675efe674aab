// The conversation list (most recent first, paged), with rename, settings and delete; and
// history search, whose hits open their conversation at the message.

import { h, clear, when, showDialog } from "./dom.js";

const PAGE = 30;

export class Sidebar {
  constructor({ connection, list, searchForm, searchInput, onOpen }) {
    this.connection = connection;
    this.list = list;
    this.searchInput = searchInput;
    this.onOpen = onOpen;
    this.current = null;
    this.conversations = new Map();
    searchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.search(searchInput.value.trim());
    });
    searchInput.addEventListener("input", () => {
      if (!searchInput.value.trim()) this.refresh();
    });
  }

  title(id) {
    const conversation = this.conversations.get(id);
    return (conversation && conversation.title) || null;
  }

  conversation(id) {
    return this.conversations.get(id) || null;
  }

  select(id) {
    this.current = id;
    for (const item of this.list.querySelectorAll(".item")) {
      item.classList.toggle("current", item.dataset.id === id);
      const link = item.querySelector("a");
      if (item.dataset.id === id) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  async refresh() {
    if (this.searchInput.value.trim()) return;
    const chunk = await this.connection.request("list_conversations", { limit: PAGE });
    this.conversations.clear();
    clear(this.list);
    this.appendPage(chunk.metadata);
  }

  appendPage({ conversations, next_cursor }) {
    for (const conversation of conversations) {
      this.conversations.set(conversation.id, conversation);
      this.list.appendChild(this.item(conversation));
    }
    if (!this.list.querySelector(".item")) {
      this.list.appendChild(h("p", { class: "heading" }, "No conversations yet."));
    }
    if (next_cursor) {
      const more = h("button", { type: "button", class: "link more" }, "Show more");
      more.addEventListener("click", async () => {
        const chunk = await this.connection.request("list_conversations", { limit: PAGE, cursor: next_cursor });
        more.remove();
        this.appendPage(chunk.metadata);
      });
      this.list.appendChild(more);
    }
  }

  item(conversation) {
    const title = conversation.title || "Untitled";
    const rename = h("button", { type: "button", "aria-label": `Settings of ${title}`, title: "Rename, system prompt" }, "✎");
    rename.addEventListener("click", () => this.edit(conversation.id));
    const remove = h("button", { type: "button", "aria-label": `Delete ${title}`, title: "Delete" }, "✕");
    remove.addEventListener("click", () => this.remove(conversation));
    const item = h(
      "div",
      { class: `item${conversation.id === this.current ? " current" : ""}`, dataset: { id: conversation.id } },
      h("a", { href: `#/c/${encodeURIComponent(conversation.id)}` },
        h("span", { class: "title" }, title), h("span", { class: "when" }, when(conversation.updated_at))),
      rename,
      remove,
    );
    return item;
  }

  /** The rename and system-prompt dialog. */
  async edit(id) {
    const conversation = this.conversations.get(id);
    if (!conversation) return;
    const title = h("input", { id: "edit-title", value: conversation.title || "", maxlength: 512 });
    const prompt = h("textarea", { id: "edit-prompt", rows: 6,
      placeholder: "Empty: the server's default system prompt" });
    prompt.value = conversation.system_prompt || "";
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const dialog = h(
      "dialog",
      { "aria-labelledby": "edit-heading" },
      h("form", { method: "dialog" },
        h("h2", { id: "edit-heading" }, "Conversation settings"),
        h("label", { for: "edit-title" }, "Title"), title,
        h("label", { for: "edit-prompt" }, "System prompt for this conversation"), prompt,
        error,
        h("div", { class: "actions" },
          h("button", { type: "submit", value: "cancel", formnovalidate: true }, "Cancel"),
          h("button", { type: "submit", value: "save", class: "primary" }, "Save"))),
    );
    document.body.appendChild(dialog);
    const answer = await showDialog(dialog);
    dialog.remove();
    if (answer !== "save") return;
    try {
      const chunk = await this.connection.request("update_conversation", {
        conversation_id: id, title: title.value, system_prompt: prompt.value,
      });
      this.conversations.set(id, chunk.metadata.conversation);
      await this.refresh();
      this.select(this.current);
      document.dispatchEvent(new CustomEvent("conversation-updated", { detail: chunk.metadata.conversation }));
    } catch (failure) {
      document.dispatchEvent(new CustomEvent("page-error", { detail: failure.message }));
    }
  }

  async remove(conversation) {
    const dialog = h(
      "dialog",
      { "aria-labelledby": "delete-heading" },
      h("form", { method: "dialog" },
        h("h2", { id: "delete-heading" }, "Delete this conversation?"),
        h("p", {}, `“${conversation.title || "Untitled"}” and all its messages will be deleted.`),
        h("div", { class: "actions" },
          h("button", { type: "submit", value: "cancel" }, "Cancel"),
          h("button", { type: "submit", value: "delete", class: "primary" }, "Delete"))),
    );
    document.body.appendChild(dialog);
    const answer = await showDialog(dialog);
    dialog.remove();
    if (answer !== "delete") return;
    await this.connection.request("delete_conversation", { conversation_id: conversation.id });
    if (this.current === conversation.id) location.hash = "#/";
    await this.refresh();
  }

  async search(query) {
    if (!query) return this.refresh();
    clear(this.list).appendChild(h("p", { class: "heading" }, "Searching…"));
    let chunk;
    try {
      chunk = await this.connection.request("search", { query, k: 20 });
    } catch (failure) {
      clear(this.list).appendChild(h("p", { class: "error" }, failure.message));
      return;
    }
    const hits = chunk.metadata.hits;
    clear(this.list).appendChild(
      h("p", { class: "heading" }, hits.length ? `${hits.length} messages match` : "No message matches"),
    );
    for (const hit of hits) {
      const title = this.title(hit.conversation_id) || "a conversation";
      const button = h("button", { type: "button", class: "hit" },
        h("span", { class: "snippet" }, hit.snippet),
        h("span", { class: "meta" }, `${hit.role} · ${title} · ${when(hit.created_at)}`));
      button.addEventListener("click", () => this.onOpen(hit.conversation_id, hit.message_id));
      this.list.appendChild(button);
    }
  }
}
