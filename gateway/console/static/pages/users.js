// Users and groups: the local users who own keys (GET /admin/users), their groups, and, for
// whoever may read the trail, who and which groups used the gateway (GET /admin/audit/summary).

import { getJson } from "../api.js";
import { el, fill, fmt, heading, table } from "../dom.js";

const SINCE = "30d";

const ACTIVITY = [
  { key: "count", title: "Requests", num: true, render: (r) => fmt.count(r.count) },
  { key: "tokens", title: "Tokens", num: true, render: (r) => fmt.count(r.tokens_in + r.tokens_out) },
  { key: "cost_usd", title: "Cost", num: true, render: (r) => fmt.usd(r.cost_usd) },
];

function groupsOf(users) {
  const members = new Map();
  for (const user of users) {
    for (const group of user.groups) members.set(group, [...(members.get(group) || []), user.user]);
  }
  return [...members].sort(([a], [b]) => a.localeCompare(b)).map(([group, names]) => ({ group, names }));
}

export default {
  id: "users",
  title: "Users & groups",
  needs: "users.read",
  async render(view, { may }) {
    const reads = may("audit.read");
    const [users, byUser, byGroup] = await Promise.all([
      getJson("admin/users").then((a) => a.data),
      reads ? getJson("admin/audit/summary", { by: "user", since: SINCE }).then((a) => a.rows) : null,
      reads ? getJson("admin/audit/summary", { by: "group", since: SINCE }).then((a) => a.rows) : null,
    ]);
    const used = new Map((byGroup || []).map((r) => [r.key, r]));
    fill(
      view,
      heading("Users & groups"),
      el("p", { class: "note" }, "Local users are the owners of issued keys; people who sign in through the directory or SSO appear under activity once they have used the gateway."),
      el("h2", {}, "Local users"),
      table(
        [
          { key: "user", title: "User" },
          { key: "display_name", title: "Name" },
          { key: "email", title: "E-mail" },
          { key: "department", title: "Department" },
          { key: "title", title: "Title" },
          { key: "groups", title: "Groups" },
          { key: "roles", title: "Roles" },
        ],
        users,
        { id: "users-table", rowKey: (u) => u.user, empty: "No local users yet." },
      ),
      el("h2", {}, "Groups of local users"),
      table(
        [
          { key: "group", title: "Group" },
          { key: "names", title: "Members" },
          ...(reads
            ? [{ key: "requests", title: `Requests (${SINCE})`, num: true, render: (g) => fmt.count(used.get(g.group)?.count ?? 0) }]
            : []),
        ],
        groupsOf(users),
        { id: "groups-table", rowKey: (g) => g.group, empty: "No groups." },
      ),
      reads
        ? [
            el("h2", {}, `Activity by user, last ${SINCE}`),
            table([{ key: "key", title: "User" }, ...ACTIVITY], byUser.filter((r) => r.key !== null), {
              id: "activity-users",
              rowKey: (r) => r.key,
            }),
            el("h2", {}, `Activity by group, last ${SINCE}`),
            table([{ key: "key", title: "Group" }, ...ACTIVITY], byGroup.filter((r) => r.key !== null), {
              id: "activity-groups",
              rowKey: (r) => r.key,
            }),
          ]
        : null,
    );
  },
};
