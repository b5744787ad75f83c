// p2pchat's web page: one WebSocket to the host, which runs a chat client for
// this page. Everything that comes from the chat is shown with textContent:
// no text is ever read as markup.
"use strict";

(() => {
  const TOKEN_KEY = "p2pchat.token";
  const NICK_KEY = "p2pchat.nick";
  const TAB_KEY = "p2pchat.tab";
  const HISTORY_MAX = 50;
  const RETRY_FIRST_MS = 250;
  const RETRY_MAX_MS = 5000;

  const $ = (id) => document.getElementById(id);
  const joinView = $("join-view");
  const joinForm = $("join-form");
  const nickField = $("nick");
  const joinButton = $("join");
  const joinStatus = $("join-status");
  const chatView = $("chat-view");
  const tabList = $("tabs");
  const logs = $("logs");
  const peopleList = $("people");
  const peoplePanel = $("people-panel");
  const peopleToggle = $("people-toggle");
  const notifyButton = $("notify");
  const sayForm = $("say");
  const messageField = $("message");
  const status = $("status");

  let ws = null;
  let replacedNow = false; // another page took this session: do not take it back
  let joined = false; // a welcome came on the current socket
  let pendingJoin = null; // a nickname to send once the socket opens
  let retryMs = RETRY_FIRST_MS;
  let retryTimer = null;
  let me = "";
  let current = "group";
  const tabs = new Map(); // tab id -> {id, title, button, badge, log, unread, mentioned}
  let tabSerial = 0;
  const history = [];
  let historyAt = 0; // index into history while browsing it with Up/Down
  let draft = "";

  const storage = {
    get(key) {
      try { return sessionStorage.getItem(key); } catch { return null; }
    },
    set(key, value) {
      try { sessionStorage.setItem(key, value); } catch { /* private mode: no restore */ }
    },
    remove(key) {
      try { sessionStorage.removeItem(key); } catch { /* as above */ }
    },
  };

  // ---- connection -------------------------------------------------------

  function connect() {
    if (ws && ws.readyState <= WebSocket.OPEN) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws`);
    ws = socket;
    joined = false;
    socket.addEventListener("open", () => {
      if (socket !== ws) return;
      const token = storage.get(TOKEN_KEY);
      if (token) {
        send({ type: "resume", token });
      } else if (pendingJoin !== null) {
        send({ type: "join", nick: pendingJoin });
      }
    });
    socket.addEventListener("message", (event) => {
      if (socket !== ws) return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg && typeof msg === "object") handle(msg);
    });
    socket.addEventListener("close", () => {
      if (socket !== ws) return;
      ws = null;
      joined = false;
      if (replacedNow) return;
      // A session to take back, or a join waiting: try again, a little later each time.
      if (storage.get(TOKEN_KEY) || pendingJoin !== null) {
        setStatus("Connection lost; reconnecting…");
        retryTimer = setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
    });
  }

  function send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  // ---- messages from the host ------------------------------------------

  function handle(msg) {
    switch (msg.type) {
      case "welcome":
        welcome(msg);
        break;
      case "refused":
        pendingJoin = null;
        showJoin(`Not joined: ${text(msg.reason) || "refused"}`);
        break;
      case "expired":
        storage.remove(TOKEN_KEY);
        showJoin("Your session has ended. Join again.");
        break;
      case "line":
        if (!joined) break;
        addLine(tabFor(msg.tab, msg.title), msg.line, true);
        break;
      case "participants":
        if (!joined) break;
        if (msg.me) setMe(text(msg.me));
        showParticipants(msg.participants);
        break;
      case "focus":
        if (!joined) break;
        select(tabFor(msg.tab, msg.title).id);
        messageField.focus();
        break;
      case "nick":
        if (!joined) break;
        setMe(text(msg.nick));
        break;
      case "ended":
        storage.remove(TOKEN_KEY);
        pendingJoin = null;
        showJoin(`Left the chat: ${text(msg.reason) || "session ended"}`);
        break;
      case "replaced":
        replacedNow = true;
        storage.remove(TOKEN_KEY);
        pendingJoin = null;
        showJoin("This chat was taken over by another page.");
        break;
      default:
        break; // a newer host's message this page does not know: ignore it
    }
  }

  function welcome(msg) {
    joined = true;
    replacedNow = false;
    pendingJoin = null;
    retryMs = RETRY_FIRST_MS;
    storage.set(TOKEN_KEY, text(msg.token));
    setMe(text(msg.nick));
    for (const tab of tabs.values()) {
      tab.button.remove();
      tab.log.remove();
    }
    tabs.clear();
    for (const t of Array.isArray(msg.tabs) ? msg.tabs : []) {
      const tab = tabFor(t.tab, t.title);
      for (const line of Array.isArray(t.lines) ? t.lines : []) addLine(tab, line, false);
    }
    tabFor("group", "Group");
    const keep = storage.get(TAB_KEY);
    select(keep && tabs.has(keep) ? keep : "group");
    showParticipants(msg.participants);
    joinView.hidden = true;
    chatView.hidden = false;
    setStatus("");
    updateNotifyButton();
    messageField.focus();
    performance.mark("p2pchat-joined");
  }

  function showJoin(reason) {
    joined = false;
    chatView.hidden = true;
    joinView.hidden = false;
    joinButton.disabled = false;
    joinStatus.textContent = reason;
    if (!nickField.value) nickField.value = storage.get(NICK_KEY) || "";
    nickField.focus();
    document.title = "p2pchat";
  }

  // ---- tabs and lines --------------------------------------------------

  function tabFor(id, title) {
    id = text(id) || "group";
    let tab = tabs.get(id);
    if (tab) {
      // A peer who changed nickname keeps the tab; its title follows.
      const name = text(title);
      if (name && name !== tab.title) {
        tab.title = name;
        tab.button.querySelector(".tab-title").textContent = name;
        tab.log.setAttribute("aria-label", name);
      }
      return tab;
    }
    const n = ++tabSerial;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tab";
    button.id = `tab-${n}`;
    button.setAttribute("role", "tab");
    button.setAttribute("aria-selected", "false");
    button.setAttribute("aria-controls", `log-${n}`);
    button.tabIndex = -1;
    const name = document.createElement("span");
    name.className = "tab-title";
    name.id = `tab-title-${n}`;
    name.textContent = text(title) || id;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.id = `tab-badge-${n}`;
    badge.hidden = true;
    button.append(name, badge);
    // The tab is named by its title alone; the count and the mark describe it.
    button.setAttribute("aria-labelledby", name.id);
    button.setAttribute("aria-describedby", badge.id);
    button.addEventListener("click", () => {
      select(id);
      messageField.focus();
    });
    button.addEventListener("keydown", tabKeys);
    const log = document.createElement("div");
    log.className = "log";
    log.id = `log-${n}`;
    log.setAttribute("role", "log");
    log.setAttribute("aria-label", name.textContent);
    log.tabIndex = 0;
    log.hidden = true;
    // The group first, the direct chats in the order they came.
    if (id === "group") tabList.prepend(button);
    else tabList.append(button);
    logs.append(log);
    tab = { id, title: name.textContent, button, badge, log, unread: 0, mentioned: false };
    tabs.set(id, tab);
    return tab;
  }

  function tabKeys(event) {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const buttons = [...tabList.querySelectorAll('[role="tab"]')];
    const i = buttons.indexOf(event.currentTarget);
    const next = buttons[(i + (event.key === "ArrowRight" ? 1 : buttons.length - 1)) % buttons.length];
    for (const tab of tabs.values()) {
      if (tab.button === next) {
        select(tab.id);
        next.focus();
      }
    }
    event.preventDefault();
  }

  function select(id) {
    const tab = tabs.get(id);
    if (!tab) return;
    current = id;
    storage.set(TAB_KEY, id);
    for (const t of tabs.values()) {
      const on = t === tab;
      t.button.setAttribute("aria-selected", on ? "true" : "false");
      t.button.tabIndex = on ? 0 : -1;
      t.log.hidden = !on;
    }
    tab.unread = 0;
    tab.mentioned = false;
    showBadge(tab);
    scrollDown(tab.log, true);
  }

  function showBadge(tab) {
    const parts = [];
    if (tab.unread) parts.push(String(tab.unread));
    if (tab.mentioned) parts.push("@");
    tab.badge.textContent = parts.join(" ");
    tab.badge.hidden = parts.length === 0;
    tab.badge.title = tab.mentioned
      ? `${tab.unread} unread, you are mentioned`
      : `${tab.unread} unread`;
    tab.button.classList.toggle("mentioned", tab.mentioned);
    let total = 0;
    for (const t of tabs.values()) total += t.unread;
    document.title = total ? `(${total}) p2pchat` : "p2pchat";
  }

  function addLine(tab, line, live) {
    if (!line || typeof line !== "object") return;
    const kind = text(line.kind) || "notice";
    const row = document.createElement("div");
    row.className = `line ${/^[a-z]+$/.test(kind) ? kind : "notice"}`;
    if (line.mention === true) row.classList.add("mention");
    const when = document.createElement("time");
    const date = new Date(Number(line.time));
    if (!Number.isNaN(date.getTime())) {
      when.dateTime = date.toISOString();
      when.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      when.title = date.toLocaleString();
    }
    row.append(when);
    if (kind === "message" || kind === "own") {
      const nick = document.createElement("span");
      nick.className = "nick";
      nick.textContent = text(line.nick);
      const body = document.createElement("span");
      body.className = "body";
      body.textContent = text(line.body);
      row.append(" ", nick, " ", body); // spaces, so that copied text and screen readers part them
    } else {
      const body = document.createElement("span");
      body.className = "body";
      body.textContent = text(line.text);
      row.append(" ", body);
    }
    const stick = nearBottom(tab.log);
    tab.log.append(row);
    // The host sends at most 500 lines per tab on a welcome; keep about as many live.
    while (tab.log.childElementCount > 1000) tab.log.firstElementChild.remove();
    scrollDown(tab.log, stick);
    if (!live) return;
    const interesting = kind === "message";
    if (interesting && tab.id !== current) {
      tab.unread += 1;
      if (line.mention === true) tab.mentioned = true;
      showBadge(tab);
    }
    if (interesting && (line.mention === true || tab.id.startsWith("d:"))) notify(tab, line);
  }

  function nearBottom(log) {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function scrollDown(log, really) {
    if (really) log.scrollTop = log.scrollHeight;
  }

  // ---- participants ----------------------------------------------------

  function setMe(nick) {
    if (!nick) return;
    me = nick;
    storage.set(NICK_KEY, nick);
  }

  function showParticipants(list) {
    const items = [];
    for (const p of Array.isArray(list) ? list : []) {
      const nick = text(p && p.nick);
      if (!nick) continue;
      const li = document.createElement("li");
      if (nick === me) {
        li.className = "self";
        li.textContent = nick;
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = " (you)";
        li.append(you);
      } else {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = nick;
        button.title = `Direct chat with ${nick}`;
        button.addEventListener("click", () => {
          send({ type: "input", tab: current, text: `/chat ${nick}` });
          peopleOpen(false);
        });
        li.append(button);
      }
      items.push(li);
    }
    peopleList.replaceChildren(...items);
    peopleToggle.textContent = `People (${items.length})`;
  }

  function peopleOpen(open) {
    peoplePanel.classList.toggle("open", open);
    peopleToggle.setAttribute("aria-expanded", open ? "true" : "false");
  }

  peopleToggle.addEventListener("click", () => {
    peopleOpen(!peoplePanel.classList.contains("open"));
  });

  // ---- notifications ---------------------------------------------------

  const canNotify = "Notification" in window;

  function updateNotifyButton() {
    notifyButton.hidden = !canNotify || Notification.permission !== "default";
  }

  notifyButton.addEventListener("click", () => {
    if (!canNotify) return;
    Promise.resolve(Notification.requestPermission()).finally(updateNotifyButton);
  });

  function notify(tab, line) {
    if (!document.hidden || !canNotify || Notification.permission !== "granted") return;
    try {
      const n = new Notification(tab.id === "group" ? `${text(line.nick)} in Group` : text(line.nick), {
        body: text(line.body),
        tag: tab.id,
      });
      n.addEventListener("click", () => {
        window.focus();
        select(tab.id);
        n.close();
      });
    } catch {
      // Some browsers allow notifications only from a service worker: go without.
    }
  }

  document.addEventListener("visibilitychange", () => {
    // Back on the page after a drop while hidden (a phone locked): take the session back.
    if (!document.hidden && !ws && storage.get(TOKEN_KEY) && !replacedNow) connect();
  });

  // ---- typing ----------------------------------------------------------

  joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const nick = nickField.value.trim();
    if (!nick) return;
    storage.remove(TOKEN_KEY);
    storage.set(NICK_KEY, nick);
    replacedNow = false;
    joinButton.disabled = true;
    joinStatus.textContent = "Joining…";
    if (!send({ type: "join", nick })) {
      pendingJoin = nick;
      connect();
    }
  });

  sayForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const line = messageField.value;
    if (!line.trim()) return;
    if (!joined || !send({ type: "input", tab: current, text: line })) {
      setStatus("Not connected; your line is kept until the chat is back.");
      return;
    }
    if (history[history.length - 1] !== line) history.push(line);
    if (history.length > HISTORY_MAX) history.shift();
    historyAt = history.length;
    draft = "";
    messageField.value = "";
  });

  messageField.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (historyAt === history.length) draft = messageField.value;
    if (event.key === "ArrowUp" && historyAt > 0) historyAt -= 1;
    else if (event.key === "ArrowDown" && historyAt < history.length) historyAt += 1;
    else return;
    messageField.value = historyAt < history.length ? history[historyAt] : draft;
    event.preventDefault();
  });

  function setStatus(message) {
    status.textContent = message;
  }

  // Whatever the host sends where text is expected is shown as text, never as markup.
  function text(value) {
    return typeof value === "string" ? value : value == null ? "" : String(value);
  }

  // ---- start -----------------------------------------------------------

  updateNotifyButton();
  if (storage.get(TOKEN_KEY)) {
    joinView.hidden = true;
    setStatus("Reconnecting…");
    chatView.hidden = false;
  } else {
    nickField.value = storage.get(NICK_KEY) || "";
    nickField.focus();
  }
  connect();
})();
