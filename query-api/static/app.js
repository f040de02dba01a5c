// The admin page: lists dormant targets from the query API and sends the
// operator's commands to the command API. Reads after a command wait for
// the command's position, so the operator sees their own change.
"use strict";

const commandApi = document.body.dataset.commandApi;
const $ = (id) => document.getElementById(id);
let position = null;
let cursor = null;

function token() {
  return sessionStorage.getItem("mileage-token") || "";
}

function notice(text, isError) {
  const el = $("notice");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function problem(response) {
  try {
    const body = await response.json();
    return `${body.title || response.status}: ${body.detail || ""}`;
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

async function query(path) {
  const url = new URL(path, window.location.origin);
  if (position) url.searchParams.set("position", position);
  const response = await fetch(url, {
    headers: { authorization: `Bearer ${token()}` },
  });
  if (!response.ok) throw new Error(await problem(response));
  return response.json();
}

async function command(method, path, body) {
  const response = await fetch(`${commandApi}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token()}`,
      "content-type": "application/json",
      "idempotency-key": crypto.randomUUID(),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) throw new Error(await problem(response));
  const answer = await response.json();
  if (answer.position) position = answer.position;
  return answer;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function render(items, append) {
  const tbody = $("rows");
  if (!append) tbody.replaceChildren();
  for (const item of items) {
    const tr = document.createElement("tr");
    tr.dataset.id = item.id;
    cell(tr, item.id);
    cell(tr, item.memberId);
    cell(tr, item.erased ? "(erased)" : item.phoneNo || "", item.erased ? "erased" : "");
    cell(tr, item.erased ? "(erased)" : item.nickname || "", item.erased ? "erased" : "");
    cell(tr, item.memberStatus, "status");
    cell(tr, item.messageStatus || "", "message-status");
    cell(tr, new Date(item.updatedAt).toLocaleString());
    const actions = cell(tr, "");
    if (item.memberStatus === "PRE_DORMANT") {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "mark-dormant";
      button.textContent = "Mark dormant";
      button.addEventListener("click", () => markDormant(item.id));
      actions.appendChild(button);
    }
    tbody.appendChild(tr);
  }
}

async function load(append) {
  if (!token()) {
    notice("Enter an operator token to see the list.", true);
    return;
  }
  try {
    const filter = $("filter").value;
    const params = new URLSearchParams({ limit: "50" });
    if (filter) params.set("status", filter);
    if (append && cursor) params.set("cursor", cursor);
    const [page, counts] = await Promise.all([
      query(`/managerpages?${params}`),
      query("/managerpages/counts"),
    ]);
    cursor = page.nextCursor;
    $("more").hidden = !cursor;
    render(page.items, append);
    $("counts").replaceChildren(
      ...Object.entries(counts.byStatus).map(([status, n]) => {
        const span = document.createElement("span");
        span.dataset.status = status;
        span.textContent = `${status}: ${n}`;
        return span;
      }),
    );
  } catch (e) {
    notice(e.message, true);
  }
}

async function markDormant(id) {
  try {
    await command("PATCH", `/dormantMembers/${encodeURIComponent(id)}`, { memberStatus: "DORMANT" });
    notice(`Target ${id} marked dormant; the notice goes out shortly.`);
    await load(false);
  } catch (e) {
    notice(e.message, true);
  }
}

$("save-token").addEventListener("click", () => {
  sessionStorage.setItem("mileage-token", $("token").value.trim());
  notice("Token set.");
  load(false);
});

$("register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const answer = await command("POST", "/dormantMembers", {
      memberId: $("register-member").value.trim(),
      phoneNo: $("register-phone").value.trim(),
      nickname: $("register-nickname").value.trim(),
    });
    notice(`Target ${answer.id} registered.`);
    $("register-form").reset();
    await load(false);
  } catch (e) {
    notice(e.message, true);
  }
});

$("filter").addEventListener("change", () => load(false));
$("refresh").addEventListener("click", () => load(false));
$("more").addEventListener("click", () => load(true));
setInterval(() => { if (token() && !cursor) load(false); }, 2000);
load(false);
