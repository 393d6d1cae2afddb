// Policy dry run: what the policy would do with a text, for a caller's groups (whose access
// grant picks the profile), explained rule by rule (POST /admin/policy/check). No provider is
// called.

import { send } from "../api.js";
import { badge, el, field, fill, fmt, heading, list, show, table, values } from "../dom.js";

function result(answer) {
  return [
    el(
      "div",
      { class: "cards" },
      el("div", { class: "card" }, el("span", { class: "label" }, "Action"), el("strong", { id: "policy-action" }, badge(answer.action))),
      el("div", { class: "card" }, el("span", { class: "label" }, "Profile"), el("strong", { id: "policy-profile" }, answer.profile)),
      el("div", { class: "card" }, el("span", { class: "label" }, "Jailbreak score"), el("strong", {}, answer.jailbreak_score.toFixed(3))),
      el("div", { class: "card" }, el("span", { class: "label" }, "Checked in"), el("strong", {}, fmt.ms(answer.latency_ms))),
    ),
    el("h2", {}, "Rules that fired"),
    table(
      [
        { key: "rule", title: "Rule" },
        { key: "action", title: "Action", render: (d) => badge(d.action) },
        { key: "detector", title: "Detector" },
        { key: "span_types", title: "Found" },
        { key: "topic", title: "Topic" },
        { key: "score", title: "Score", num: true, render: (d) => (d.score === null ? "—" : `${d.score.toFixed(3)} ≥ ${d.threshold}`) },
        { key: "detail", title: "Why" },
      ],
      answer.decisions,
      { id: "policy-decisions", rowKey: (d) => d.rule, empty: "No rule fired: the text passes as it is." },
    ),
    el("h2", {}, "What the detectors found"),
    table(
      [
        { key: "type", title: "Type" },
        { key: "text", title: "Text" },
        { key: "detector", title: "Detector" },
        { key: "confidence", title: "Confidence", num: true, render: (s) => show(s.confidence?.toFixed(2)) },
      ],
      answer.spans,
      { id: "policy-spans", empty: "Nothing." },
    ),
    answer.redacted_text === null ? null : [el("h2", {}, "What the provider would be sent"), el("pre", { id: "policy-redacted", class: "detail" }, answer.redacted_text)],
    answer.embedding_checks ? el("p", { class: "note" }, `Embedding checks (topics, similarity): ${show(answer.embedding_checks)}`) : null,
  ];
}

export default {
  id: "policy",
  title: "Policy",
  needs: "policy.check",
  async render(view, { act }) {
    const output = el("div", { id: "policy-result" });
    const form = el(
      "form",
      { id: "policy-form", class: "filters" },
      el("label", { class: "wide" }, el("span", {}, "Text"), el("textarea", { name: "text", rows: 5, required: true, placeholder: "A prompt to check" })),
      field("User", "user", { placeholder: "dry-run" }),
      field("Groups", "groups", { placeholder: "comma-separated: picks the profile" }),
      field("Model", "model", { placeholder: "applies per-model overrides" }),
      field("Direction", "direction", { options: [["input", "input (a prompt)"], ["output", "output (an answer)"]], value: "input" }),
      el("div", { class: "buttons" }, el("button", { type: "submit" }, "Dry run")),
    );
    form.addEventListener(
      "submit",
      act(async () => {
        const f = values(form);
        const answer = await send("POST", "admin/policy/check", {
          text: form.elements.text.value,
          user: f.user || undefined,
          groups: list(f.groups) || [],
          model: f.model || undefined,
          direction: f.direction,
        });
        fill(output, result(answer));
      }),
    );
    fill(
      view,
      heading("Policy dry run"),
      el("p", { class: "note" }, "The profile comes from the groups' access grant, as it would for a real caller. Nothing is sent to any provider."),
      form,
      output,
    );
  },
};
