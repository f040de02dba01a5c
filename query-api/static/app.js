// The operator console: lists and finds dormant targets and members from
// the query API, shows what happened to each (the timeline, with who did
// it), the read side's health and the counts over time, and sends the
// operator's commands to the command API. Reads after a command wait for
// its position, so the operator sees their own change. Everything shown is
// set as text (never as HTML); personal data comes masked from the API and
// never goes into a URL or the browser's storage (only the token is kept,
// in sessionStorage).
"use strict";

const commandApi = document.body.dataset.commandApi;
const $ = (id) => document.getElementById(id);
const STATUSES = ["PRE_DORMANT", "DORMANT", "DESTRUCTION", "CLEARED"];
const COLORS = { PRE_DORMANT: "#5f6368", DORMANT: "#0b57d0", DESTRUCTION: "#a50e0e", CLEARED: "#146c2e", SENT: "#146c2e", FAILED: "#a50e0e" };
let position = null;
let cursor = null;
let shown = { target: null, member: null, timelineCursor: null, pointsCursor: null };
// One Idempotency-Key per intended action, kept until the command has a
// definite answer: a double click or a retry after a lost answer sends
// the same key, so the command applies once.
const intents = new Map();

function token() {
  return sessionStorage.getItem("mileage-token") || "";
}

function notice(text, isError) {
  const el = $("notice");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

/** `tag` with `attributes` and children (strings become text, never HTML). */
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An error answer of either API, as the operator should read it. */
class Refused extends Error {
  constructor(status, body, retryAfter) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || "";
    this.retryAfter = retryAfter;
  }
}

async function refusal(response) {
  let body = {};
  try {
    body = await response.json();
  } catch (_) {
    body = {};
  }
  return new Refused(response.status, body, response.headers.get("retry-after"));
}

async function query(path, { wait = true } = {}) {
  const url = new URL(path, window.location.origin);
  if (wait && position) url.searchParams.set("position", position);
  const response = await fetch(url, { headers: { authorization: `Bearer ${token()}` } });
  if (!response.ok) throw await refusal(response);
  return response.json();
}

async function post(path, body) {
  const response = await fetch(new URL(path, window.location.origin), {
    method: "POST",
    headers: { authorization: `Bearer ${token()}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await refusal(response);
  return response.json();
}

/** Sends a command under the key of `intent` (one per intended action). */
async function command(method, path, body, intent) {
  const key = intents.get(intent) || crypto.randomUUID();
  intents.set(intent, key);
  let response;
  try {
    response = await fetch(`${commandApi}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token()}`,
        "content-type": "application/json",
        "idempotency-key": key,
      },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    throw new Error(`The command API could not be reached (${e.message}); trying again sends the same request.`);
  }
  // A 5xx or a "try again" may have applied or not: the key stays for the retry.
  if (response.status < 500 && response.status !== 429 && response.status !== 409) intents.delete(intent);
  if (!response.ok) throw await refusal(response);
  const answer = await response.json();
  if (answer.position) position = answer.position;
  return answer;
}

/** How a refused command reads: the breaker's wait, the rule it broke. */
function explain(error, what) {
  if (!(error instanceof Refused)) return error.message;
  if (error.status === 503) {
    const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
    return `${what} is not possible right now: ${error.message}.${wait}`;
  }
  if (error.status === 409) return `${what} was refused: ${error.message} (${error.code}).`;
  if (error.status === 401 || error.status === 403) return `Not allowed: ${error.message}`;
  return `${what} failed: ${error.message}`;
}

function confirmAction(text) {
  const dialog = $("confirm");
  if (dialog.open) return Promise.resolve(false);
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

const when = (at) => new Date(at).toLocaleString();
const shownText = (value) => (value === null || value === undefined ? "" : value);

function person(item) {
  return item.erased
    ? [el("span", { className: "erased" }, "(erased)"), el("span", { className: "erased" }, "(erased)")]
    : [shownText(item.phoneNo), shownText(item.nickname)];
}

// ---- the list -------------------------------------------------------

function render(items, append) {
  const tbody = $("rows");
  if (!append) tbody.replaceChildren();
  for (const item of items) {
    const [phone, nickname] = person(item);
    tbody.append(
      el("tr", { dataset: { id: item.id } },
        el("td", {}, item.id),
        el("td", {}, item.memberId),
        el("td", {}, phone),
        el("td", {}, nickname),
        el("td", { className: "status" }, item.memberStatus),
        el("td", { className: "message-status" }, shownText(item.messageStatus)),
        el("td", {}, when(item.updatedAt)),
        el("td", {}, el("button", {
          type: "button",
          className: "open",
          "aria-label": `Details of target ${item.id}`,
          onclick: () => openTarget(item.id),
        }, "Details")),
      ),
    );
  }
}

async function load(append) {
  if (!token()) {
    notice("Enter an operator token to use the console.", true);
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
      ...Object.entries(counts.byStatus).map(([status, n]) =>
        el("span", { dataset: { status } }, `${status}: ${n}`)),
    );
  } catch (e) {
    notice(explain(e, "Loading the list"), true);
  }
}

// ---- a target -------------------------------------------------------

function field(list, name, value) {
  list.append(el("dt", {}, name), el("dd", {}, value));
}

function summary(data) {
  return Object.entries(data || {})
    .filter(([name, value]) => name !== "at" && value !== null && value !== undefined)
    .map(([name, value]) => `${name}: ${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" · ");
}

function timelineEntry(entry) {
  return el("li", { dataset: { type: entry.type } },
    el("strong", { className: "type" }, entry.type),
    " ",
    el("span", { className: "meta" },
      el("time", { datetime: entry.at }, when(entry.at)),
      " · by ",
      el("span", { className: "actor" }, entry.actor || "(not recorded)"),
      " · correlation ",
      el("span", { className: "correlation" }, entry.correlationId),
    ),
    el("div", { className: "data" }, summary(entry.data)),
  );
}

async function loadTimeline(id, append) {
  const params = new URLSearchParams({ limit: "50" });
  if (append && shown.timelineCursor) params.set("cursor", shown.timelineCursor);
  const page = await query(`/managerpages/${encodeURIComponent(id)}/timeline?${params}`);
  if (!append) $("timeline").replaceChildren();
  $("timeline").append(...page.items.map(timelineEntry));
  shown.timelineCursor = page.nextCursor;
  $("timeline-more").hidden = !page.nextCursor;
}

async function openTarget(id, { focus = true } = {}) {
  try {
    const target = await query(`/managerpages/${encodeURIComponent(id)}`);
    shown.target = target;
    const fields = $("detail-fields");
    fields.replaceChildren();
    const [phone, nickname] = person(target);
    field(fields, "Target", target.id);
    field(fields, "Member", target.memberId);
    field(fields, "Phone", phone);
    field(fields, "Nickname", nickname);
    field(fields, "Status", el("span", { id: "detail-status" }, target.memberStatus));
    field(fields, "Notice", shownText(target.messageStatus) || "(none yet)");
    if (target.rejoinedMemberId) field(fields, "Re-joined as", target.rejoinedMemberId);
    field(fields, "Registered", when(target.registeredAt));
    field(fields, "Updated", when(target.updatedAt));
    $("detail-title").textContent = `Target ${target.id}`;
    $("action-dormant").hidden = target.memberStatus !== "PRE_DORMANT";
    $("action-release").hidden = target.memberStatus !== "DORMANT";
    $("detail").hidden = false;
    await loadTimeline(id, false);
    if (focus) $("detail-title").focus();
  } catch (e) {
    notice(explain(e, `Opening target ${id}`), true);
  }
}

async function act(kind) {
  const target = shown.target;
  if (!target) return;
  const [verb, path, question] = kind === "dormant"
    ? ["Marking dormant", `/dormantMembers/${encodeURIComponent(target.id)}/dormant`,
      `Mark target ${target.id} dormant? The dormant notice goes out to the person.`]
    : ["The release", `/dormantMembers/${encodeURIComponent(target.id)}/release`,
      `Release target ${target.id}? The person re-joins as a new member and the target is cleared.`];
  if (!(await confirmAction(question))) return;
  const button = $(kind === "dormant" ? "action-dormant" : "action-release");
  button.disabled = true;
  try {
    const answer = await command("POST", path, null, `${kind}:${target.id}:${target.lastPosition}`);
    notice(kind === "dormant"
      ? `Target ${target.id} marked dormant; the notice goes out shortly.`
      : `Target ${target.id} released: ${answer.memberStatus || "CLEARED"}.`);
    await Promise.all([openTarget(target.id, { focus: false }), load(false)]);
  } catch (e) {
    notice(explain(e, verb), true);
  } finally {
    button.disabled = false;
  }
}

// ---- a member -------------------------------------------------------

function pointsRow(entry) {
  const data = entry.data || {};
  const amount = entry.type === "PointsUsed" || entry.type === "PointsForfeited" ? -data.amount : data.amount;
  return el("tr", { dataset: { type: entry.type } },
    el("td", {}, when(entry.at)),
    el("td", {}, entry.type.replace(/^Points/, "").toLowerCase()),
    el("td", {}, shownText(amount)),
    el("td", {}, shownText(data.balance)),
    el("td", {}, entry.actor || ""),
  );
}

async function openMember(id) {
  try {
    const [member, history] = await Promise.all([
      query(`/members/${encodeURIComponent(id)}`),
      query(`/members/${encodeURIComponent(id)}/timeline?limit=200`),
    ]);
    shown.member = member;
    const fields = $("member-fields");
    fields.replaceChildren();
    const [phone, nickname] = person(member);
    field(fields, "Member", member.id);
    field(fields, "Status", member.memberStatus);
    field(fields, "Balance", el("span", { id: "member-balance" }, member.balance));
    field(fields, "Phone", phone);
    field(fields, "Nickname", nickname);
    field(fields, "Joined", when(member.joinedAt));
    field(fields, "Last active", when(member.lastActiveAt));
    const excluded = member.dormancyExclusion;
    field(fields, "Dormancy policy", el("span", { id: "member-policy" },
      excluded === null || excluded === undefined ? "applies" : `excluded: ${excluded}`));
    $("exclusion-form").hidden = excluded !== null && excluded !== undefined;
    $("include").hidden = !$("exclusion-form").hidden;
    $("member-title").textContent = `Member ${member.id}`;
    $("points").replaceChildren(
      ...history.items.filter((e) => e.type.startsWith("Points")).map(pointsRow),
    );
    $("member").hidden = false;
    $("member-title").focus();
  } catch (e) {
    notice(explain(e, `Opening member ${id}`), true);
  }
}

/** Takes the shown member out of the dormancy policy, with the reason
 * typed, or puts them back under it. */
async function exclusion(exclude) {
  const member = shown.member;
  if (!member) return;
  const reason = $("exclusion-reason").value.trim();
  const question = exclude
    ? `Exclude member ${member.id} from the dormancy policy ("${reason}")? An open target of the policy is lifted.`
    : `Put member ${member.id} back under the dormancy policy?`;
  if (!(await confirmAction(question))) return;
  const button = $(exclude ? "exclude" : "include");
  button.disabled = true;
  try {
    const path = `/members/${encodeURIComponent(member.id)}/dormancy-exclusion`;
    await command(exclude ? "PUT" : "DELETE", path, exclude ? { reason } : null,
      `exclusion:${member.id}:${exclude}:${reason}`);
    notice(exclude
      ? `Member ${member.id} is excluded from the dormancy policy.`
      : `Member ${member.id} is under the dormancy policy again.`);
    if (exclude) $("exclusion-reason").value = "";
    await openMember(member.id);
  } catch (e) {
    notice(explain(e, exclude ? "The exclusion" : "Putting them back"), true);
  } finally {
    button.disabled = false;
  }
}

// ---- search ---------------------------------------------------------

async function search(event) {
  event.preventDefault();
  const kind = $("search-kind").value;
  const text = $("search-text").value.trim();
  const results = $("search-results");
  try {
    const found = await post("/search", { [kind]: text });
    const items = [
      ...found.members.map((m) => el("li", {},
        el("button", { type: "button", className: "found-member", onclick: () => openMember(m.id) },
          `Member ${m.id}`),
        ` ${m.memberStatus} · balance ${m.balance} · `, ...person(m).flatMap((p) => [p, " "]))),
      ...found.targets.map((t) => el("li", {},
        el("button", { type: "button", className: "found-target", onclick: () => openTarget(t.id) },
          `Target ${t.id}`),
        ` ${t.memberStatus} · notice ${t.messageStatus || "none"}`)),
    ];
    results.replaceChildren(items.length
      ? el("ul", {}, items)
      : el("p", { className: "nobody" }, "Nobody found."));
  } catch (e) {
    results.replaceChildren(el("p", { className: "error" }, explain(e, "The search")));
  }
}

// ---- health ---------------------------------------------------------

async function health() {
  try {
    const projections = await query("/projections", { wait: false });
    const threshold = projections.lagAlertSeconds;
    const problems = projections.items.flatMap((p) => {
      if (p.stopped) return [`${p.name} stopped at ${p.stopped.position} (${p.stopped.eventType}): ${p.stopped.reason}`];
      if (p.state === "stopped") return [`${p.name} is stopped`];
      if (p.lagSeconds > threshold) return [`${p.name} is ${Math.round(p.lagSeconds)} s behind (${p.lagEvents} events)`];
      return [];
    });
    const banner = $("health");
    banner.hidden = problems.length === 0;
    banner.replaceChildren(...(problems.length
      ? [el("strong", {}, "The lists may be out of date. "), el("ul", {}, problems.map((p) => el("li", {}, p)))]
      : []));
  } catch (_) {
    // The list's own error says what is wrong with the token or the API.
  }
}

// ---- the chart ------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function drawChart(history) {
  const items = history.items;
  const width = 560, height = 200, notices = 60, left = 40, bottom = 18;
  const max = Math.max(1, ...items.flatMap((i) => STATUSES.map((s) => i.targets[s])));
  const maxNotices = Math.max(1, ...items.flatMap((i) => [i.notices.SENT, i.notices.FAILED]));
  const x = (i) => left + (items.length <= 1 ? 0 : (i * (width - left - 10)) / (items.length - 1));
  const y = (n) => 10 + (height - 10 - bottom) * (1 - n / max);
  const last = items[items.length - 1] || { targets: {}, notices: {} };
  const described = STATUSES.map((s) => `${s} ${last.targets[s] || 0}`).join(", ");
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height + notices}`,
    width: "100%",
    role: "img",
    "aria-labelledby": "chart-title chart-desc",
  },
  svg("title", { id: "chart-title" }, `Targets per status and notices per ${history.bucket}`),
  svg("desc", { id: "chart-desc" }, `Now: ${described}. Notices in the last ${history.bucket}: sent ${last.notices.SENT || 0}, failed ${last.notices.FAILED || 0}.`),
  svg("line", { x1: left, y1: height - bottom, x2: width - 10, y2: height - bottom, stroke: "#5f5f5f" }),
  svg("text", { x: left - 6, y: 16, "text-anchor": "end", "font-size": 11 }, max),
  svg("text", { x: left - 6, y: height - bottom, "text-anchor": "end", "font-size": 11 }, 0),
  );
  for (const status of STATUSES) {
    const points = items.map((item, i) => `${x(i)},${y(item.targets[status])}`).join(" ");
    chart.append(svg("polyline", { points, fill: "none", stroke: COLORS[status], "stroke-width": 2, "data-status": status }));
  }
  const barWidth = Math.max(1, (width - left - 10) / Math.max(1, items.length) / 2.5);
  items.forEach((item, i) => {
    ["SENT", "FAILED"].forEach((outcome, k) => {
      const h = (notices - 8) * (item.notices[outcome] / maxNotices);
      if (h > 0) {
        chart.append(svg("rect", {
          x: x(i) + k * barWidth - barWidth, y: height + notices - h, width: barWidth, height: h,
          fill: COLORS[outcome], "data-outcome": outcome,
        }));
      }
    });
  });
  $("chart").replaceChildren(chart);
  $("chart-legend").replaceChildren(...[...STATUSES, "SENT", "FAILED"].map((name) =>
    el("span", {}, el("span", { className: "swatch", style: `background:${COLORS[name]}` }),
      STATUSES.includes(name) ? name : `notices ${name}`)));
  const head = el("tr", {}, el("th", { scope: "col" }, history.bucket),
    ...STATUSES.map((s) => el("th", { scope: "col" }, s)),
    el("th", { scope: "col" }, "sent"), el("th", { scope: "col" }, "failed"));
  $("chart-table").replaceChildren(el("thead", {}, head), el("tbody", {},
    items.map((item) => el("tr", {}, el("th", { scope: "row" }, when(item.at)),
      ...STATUSES.map((s) => el("td", {}, item.targets[s])),
      el("td", {}, item.notices.SENT), el("td", {}, item.notices.FAILED)))));
}

async function chart() {
  try {
    drawChart(await query(`/managerpages/counts/history?bucket=${$("chart-bucket").value}`));
  } catch (e) {
    $("chart").replaceChildren(el("p", { className: "error" }, explain(e, "The chart")));
  }
}

// ---- wiring ---------------------------------------------------------

function refreshAll() {
  load(false);
  health();
  chart();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("mileage-token", $("token").value.trim());
  $("token").value = "";
  notice("Token set.");
  refreshAll();
});

$("register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {
    memberId: $("register-member").value.trim(),
    phoneNo: $("register-phone").value.trim(),
    nickname: $("register-nickname").value.trim(),
  };
  try {
    const answer = await command("POST", "/dormantMembers", body, `register:${JSON.stringify(body)}`);
    notice(`Target ${answer.id} registered.`);
    $("register-form").reset();
    await load(false);
  } catch (e) {
    notice(explain(e, "The registration"), true);
  }
});

$("search-form").addEventListener("submit", search);
$("filter").addEventListener("change", () => load(false));
$("refresh").addEventListener("click", refreshAll);
$("more").addEventListener("click", () => load(true));
$("action-dormant").addEventListener("click", () => act("dormant"));
$("action-release").addEventListener("click", () => act("release"));
$("timeline-more").addEventListener("click", () => shown.target && loadTimeline(shown.target.id, true));
$("open-member").addEventListener("click", () => shown.target && openMember(shown.target.memberId));
$("close-detail").addEventListener("click", () => { $("detail").hidden = true; shown.target = null; });
$("close-member").addEventListener("click", () => { $("member").hidden = true; shown.member = null; });
$("exclusion-form").addEventListener("submit", (event) => { event.preventDefault(); exclusion(true); });
$("include").addEventListener("click", () => exclusion(false));
$("chart-bucket").addEventListener("change", chart);
setInterval(() => {
  if (!token()) return;
  if (!cursor) load(false);
  health();
  if (shown.target && !$("confirm").open) openTarget(shown.target.id, { focus: false });
}, 3000);
setInterval(() => { if (token()) chart(); }, 30000);
refreshAll();
