// A server's question to the user (MCP elicitation) as a form built from its schema: one
// labelled field per property (text, email, URL, date, number, yes/no, a choice, several
// choices), the required ones marked. Submit accepts; Decline and Not now answer without data.

import { h, showDialog } from "./dom.js";

/** Shows the question; `answer` resolves with `{action, content}`, or null if it expired. */
export function askQuestion(meta, problem) {
  const schema = meta.schema || {};
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, property], n) =>
    field(`q${n}-${name}`, name, property, required.has(name)));
  const form = h("form", { method: "dialog" },
    h("h2", { id: "question-heading" }, "A tool asks"),
    h("p", {}, h("strong", {}, meta.server || "A server"), ` asks: ${meta.message || ""}`),
    problem ? h("p", { class: "error", role: "alert" }, problem) : null,
    fields.map((f) => f.element),
    h("div", { class: "actions" },
      h("button", { type: "submit", value: "cancel", formnovalidate: true }, "Not now"),
      h("button", { type: "submit", value: "decline", formnovalidate: true }, "Decline"),
      h("button", { type: "submit", value: "accept", class: "primary" }, "Send")));
  const dialog = h("dialog", { class: "question", "aria-labelledby": "question-heading" }, form);
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  document.body.appendChild(dialog);
  const answer = showDialog(dialog).then((action) => {
    dialog.remove();
    if (action === "accept") {
      const content = Object.create(null);
      for (const f of fields) {
        const value = f.value();
        if (value !== undefined) content[f.name] = value;
      }
      return { action, content };
    }
    return action === "decline" || action === "cancel" ? { action } : null;
  });
  return { dialog, answer };
}

/** The allowed values of a property: `enum`, or `oneOf`/`anyOf` of `const` with titles. */
function choices(property) {
  if (Array.isArray(property.enum)) {
    const names = property.enumNames || [];
    return property.enum.map((value, i) => ({ value, title: names[i] || value }));
  }
  const options = property.oneOf || property.anyOf;
  if (Array.isArray(options)) return options.map((o) => ({ value: o.const, title: o.title || o.const }));
  return null;
}

function field(id, name, property, isRequired) {
  const label = h("label", { for: id }, property.title || name, isRequired ? " *" : "");
  const help = property.description ? h("small", { class: "help" }, property.description) : null;
  const type = property.type || "string";
  const options = type === "array" ? choices(property.items || {}) : choices(property);
  let input;
  let value;
  if (type === "array" && options) {
    const boxes = options.map((o, i) => {
      const box = h("input", { type: "checkbox", id: `${id}-${i}`, value: o.value,
        checked: (property.default || []).includes(o.value) });
      return { box, element: h("span", { class: "choice" }, box, h("label", { for: `${id}-${i}` }, o.title)) };
    });
    input = h("fieldset", { id }, h("legend", {}, property.title || name), boxes.map((b) => b.element));
    value = () => boxes.filter((b) => b.box.checked).map((b) => b.box.value);
    return { name, value, element: h("div", { class: "field" }, input, help) };
  }
  if (options) {
    input = h("select", { id, required: isRequired },
      isRequired ? null : h("option", { value: "" }, "—"),
      options.map((o) => h("option", { value: o.value, selected: o.value === property.default }, o.title)));
    value = () => input.value || undefined;
  } else if (type === "boolean") {
    input = h("input", { type: "checkbox", id, checked: property.default === true });
    value = () => input.checked;
  } else if (type === "number" || type === "integer") {
    input = h("input", { type: "number", id, required: isRequired, min: property.minimum, max: property.maximum,
      step: type === "integer" ? 1 : "any", value: property.default });
    value = () => (input.value === "" ? undefined : Number(input.value));
  } else {
    const kinds = { email: "email", uri: "url", date: "date", "date-time": "datetime-local" };
    input = h("input", { type: kinds[property.format] || "text", id, required: isRequired,
      minlength: property.minLength, maxlength: property.maxLength, value: property.default });
    value = () => {
      if (input.value === "") return undefined;
      return property.format === "date-time" ? new Date(input.value).toISOString() : input.value;
    };
  }
  return { name, value, element: h("div", { class: "field" }, label, input, help) };
}
