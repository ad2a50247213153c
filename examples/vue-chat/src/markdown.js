import { marked } from "marked";
import DOMPurify from "dompurify";

// The model's text is Markdown, never HTML: raw HTML in it is shown as text, and the
// rendered result is sanitised once more before it reaches v-html.
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
marked.use({ renderer: { html: ({ text }) => escapeHtml(text) } });

export function renderMarkdown(text) {
  return DOMPurify.sanitize(marked.parse(text, { async: false }));
}
