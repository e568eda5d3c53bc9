// The chat demo: what a support-chat page does with @stomp/stompjs against stompd.
// - joining a room is subscribing to /topic/demo.<room> (a presence room, DEMO=1) with
//   `x-presence-snapshot: true`: the first message is who is here, then every JOIN and LEAVE;
// - chat messages are ordinary SENDs to the room, and the broker stamps each with `user-id`;
// - a private message is a SEND to /user/<name>/queue/private, which only that user's
//   sessions subscribed to /user/queue/private receive;
// - when the broker goes away the client reconnects by itself, waiting longer each time
//   (0.5 s doubling up to 10 s), and takes a fresh member list on each reconnect.
// Every name and message is put in the page as text, never as HTML.

const { Client, ReconnectionTimeMode } = window.StompJs;
const $ = (id) => document.getElementById(id);

const config = await (await fetch('/demo/config.json', { cache: 'no-store' })).json();
let client;
let me = '';
let room = '';
let attempts = 0;
/** userId → roles */
const members = new Map();

function setStatus(text) {
  $('status').textContent = text;
}

function line(kind, ...parts) {
  const node = document.createElement('div');
  node.className = `line ${kind}`;
  for (const part of parts) {
    if (typeof part === 'string') node.append(part);
    else {
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = part.from;
      node.append(from);
    }
  }
  $('log').append(node);
  $('log').scrollTop = $('log').scrollHeight;
}

function renderMembers() {
  $('member-count').textContent = String(members.size);
  $('members').replaceChildren(
    ...[...members.keys()].sort().map((userId) => {
      const item = document.createElement('li');
      item.dataset.userId = userId;
      item.textContent = userId === me ? `${userId} (you)` : userId;
      item.addEventListener('click', () => {
        if (userId === me) return;
        $('to').value = userId;
        $('text').focus();
      });
      return item;
    }),
  );
  const chosen = $('to').value;
  const options = [
    ['', 'to everyone'],
    ...[...members.keys()]
      .filter((u) => u !== me)
      .sort()
      .map((u) => [u, `only to ${u}`]),
  ];
  $('to').replaceChildren(
    ...options.map(([value, label]) => {
      const option = document.createElement('option');
      option.value = value;
      option.textContent = label;
      return option;
    }),
  );
  $('to').value = members.has(chosen) ? chosen : '';
}

function onRoomMessage(message) {
  const body = JSON.parse(message.body);
  switch (message.headers['x-presence']) {
    case 'snapshot': // always the first message of the subscription: who is here now
      members.clear();
      for (const member of body.members) members.set(member.userId, member.roles);
      renderMembers();
      line('system', `in the room: ${[...members.keys()].join(', ')}`);
      break;
    case 'join':
      members.set(body.userId, body.roles);
      renderMembers();
      line('system', `${body.userId} joined`);
      break;
    case 'leave':
      members.delete(body.userId);
      renderMembers();
      line('system', `${body.userId} left (${body.reason})`);
      break;
    default: {
      const from = message.headers['user-id'];
      line(from === me ? 'mine' : 'said', { from }, String(body.text ?? ''));
    }
  }
}

function onPrivateMessage(message) {
  const body = JSON.parse(message.body);
  line('private', { from: `${message.headers['user-id']} → you` }, String(body.text ?? ''));
}

function join(name, roomName) {
  me = name;
  room = roomName;
  attempts = 0;
  $('join').hidden = true;
  $('chat').hidden = false;
  $('leave').hidden = false;
  $('whoami').textContent = `as ${me}`;
  $('room-title').textContent = `#${room}`;
  $('log').replaceChildren();
  client = new Client({
    brokerURL: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.hostname}:${config.wsPort}${config.wsPath}`,
    connectHeaders: { login: me },
    // Back-off: 0.5 s, 1 s, 2 s, … at most 10 s between attempts while the broker is away.
    reconnectDelay: 500,
    maxReconnectDelay: 10_000,
    reconnectTimeMode: ReconnectionTimeMode.EXPONENTIAL,
    heartbeatOutgoing: 4000,
    heartbeatIncoming: 10000,
    onConnect: () => {
      if (attempts > 0) line('system', 'reconnected');
      attempts = 0;
      setStatus('connected');
      client.subscribe(`/topic/demo.${room}`, onRoomMessage, { 'x-presence-snapshot': 'true' });
      client.subscribe('/user/queue/private', onPrivateMessage);
    },
    onWebSocketClose: () => {
      if (!client.active) return;
      if (attempts === 0) line('system', 'connection lost: reconnecting…');
      attempts++;
      setStatus(`reconnecting (attempt ${attempts})…`);
    },
    onStompError: (frame) => line('system', `broker: ${frame.headers.message}`),
  });
  setStatus('connecting…');
  client.activate();
}

$('join-form').addEventListener('submit', (event) => {
  event.preventDefault();
  if (config.wsPort === null) {
    $('join-error').hidden = false;
    $('join-error').textContent = 'The WebSocket listener is off (WS_PORT=off): the demo needs it.';
    return;
  }
  join($('name').value.trim(), $('room').value.trim());
});

$('send-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('text').value;
  const to = $('to').value;
  if (!client?.connected) return setStatus('not connected: wait for the reconnect');
  if (to === '') {
    client.publish({ destination: `/topic/demo.${room}`, body: JSON.stringify({ text }), headers: { 'content-type': 'application/json' } });
  } else {
    client.publish({ destination: `/user/${to}/queue/private`, body: JSON.stringify({ text }), headers: { 'content-type': 'application/json' } });
    line('private mine', { from: `you → ${to}` }, text);
  }
  $('text').value = '';
});

$('leave').addEventListener('click', async () => {
  await client?.deactivate();
  members.clear();
  $('chat').hidden = true;
  $('join').hidden = false;
  $('leave').hidden = true;
  $('whoami').textContent = '';
  setStatus('not connected');
});

if (!config.isOpenLogin) {
  $('join-error').hidden = false;
  $('join-error').textContent = 'This broker checks credentials (AUTH is not "none"): the demo logs in with the name only, so it will be refused. Run it with the default embedded settings.';
}
$('name').focus();
