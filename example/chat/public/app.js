// The chat page. A room is the channel `chat:<room>`; its messages come from the plugin's client
// and are numbered by the server (`seq`), so the page shows each once, in order, whatever path it
// came by: the server's store on joining (with the room's position, which the page subscribes
// after), a poll, or a reload of the room after a gap.
// Every piece of a message is put in the page with textContent: a message is text, never markup.
import { CometClient } from '/comet/client.js'

const roomPattern = /^[A-Za-z0-9_-]{1,64}$/
const defaultRoom = 'lobby'

const status = document.querySelector('#status')
const whoForm = document.querySelector('#who')
const roomInput = document.querySelector('#room')
const nameInput = document.querySelector('#name')
const list = document.querySelector('#messages')
const sendForm = document.querySelector('#send')
const textInput = document.querySelector('#text')
const errorLine = document.querySelector('#error')
const outbox = document.querySelector('#outbox')

/** The room shown. */
let room
/** seq → its list item, for the room shown. */
let shown = new Map()
/** While the room is reloaded after a gap: { live }, the messages that arrived meanwhile. */
let reloading
/** When the room was last reloaded after a gap, while connected since. */
let reloadedAt
/**
 * Messages the last reload found in the store that the client has not delivered yet: the server
 * stores a message before it publishes it, so a reload may show one that the client then brings too.
 */
let fromStoreOnly = new Set()

const client = new CometClient({
  url: '/comet',
  onStateChange (state) {
    // A later reconnection without a gap shows plain "connected" again.
    if (state !== 'connected') reloadedAt = undefined
    showStatus()
  },
  onGap () {
    // Only the shown room's channel is subscribed. Called before the events of the same answer.
    void reload()
  },
  onError (error) {
    console.warn('chat: poll failed, the client retries by itself:', error.message)
  }
})

let subscription
function join (name) {
  if (!roomPattern.test(name) || name === room) return
  subscription?.unsubscribe()
  room = name
  roomInput.value = name
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`)
  shown = new Map()
  fromStoreOnly = new Set()
  list.replaceChildren()
  outbox.replaceChildren()
  reloading = undefined
  reloadedAt = undefined
  subscription = undefined
  // The room's messages and its position, then a subscription after that position: nothing
  // published meanwhile is missed.
  void reload(position => {
    subscription = client.subscribe(`chat:${name}`, message => { receive(name, message) }, { after: position })
  })
}

function receive (messageRoom, message) {
  if (messageRoom !== room) return
  if (reloading !== undefined) {
    reloading.live.set(message.seq, message)
  } else if (shown.has(message.seq)) {
    // Only a reload overlaps what the client delivers, once; beyond that, the client repeated itself.
    if (!fromStoreOnly.delete(message.seq)) console.warn(`chat: message ${message.seq} was delivered twice`)
  } else {
    show(message)
  }
}

// On joining, or when the plugin's history lost messages (the server restarted, say): ask the
// server's store for the room, and add what arrived while asking. The store has every message that
// was published, since the server stores a message before it publishes it. `subscribeAfter`, on
// joining, subscribes after the position read before the store's messages.
async function reload (subscribeAfter) {
  const thisReload = { live: new Map() }
  const reloadedRoom = room
  reloading = thisReload
  showStatus()
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(`/rooms/${reloadedRoom}/messages`)
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      const { position, messages } = await response.json()
      // Another gap, or another room, started a newer reload.
      if (reloading !== thisReload) return
      subscribeAfter?.(position)
      shown = new Map()
      list.replaceChildren()
      fromStoreOnly = new Set(messages.map(message => message.seq))
      for (const message of thisReload.live.values()) fromStoreOnly.delete(message.seq)
      for (const message of [...messages, ...thisReload.live.values()]) show(message)
      reloading = undefined
      // Joining is not a reload after a gap.
      if (subscribeAfter === undefined) reloadedAt = new Date()
      showStatus()
      return
    } catch (error) {
      if (reloading !== thisReload) return
      console.warn('chat: reloading the room failed, trying again:', error.message)
      await new Promise(resolve => setTimeout(resolve, Math.min(10_000, 500 * 2 ** attempt)))
    }
  }
}

function show (message) {
  if (shown.has(message.seq)) return
  const item = document.createElement('li')
  item.dataset.seq = String(message.seq)
  const time = document.createElement('time')
  time.dateTime = message.at
  time.textContent = new Date(message.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  const name = document.createElement('span')
  name.className = 'name'
  name.textContent = message.name
  const text = document.createElement('span')
  text.className = 'text'
  text.textContent = message.text
  item.append(time, name, text)

  // Usually the last; a message that overtook another goes before it.
  let before = list.lastElementChild
  while (before !== null && Number(before.dataset.seq) > message.seq) before = before.previousElementSibling
  if (before === null) list.prepend(item)
  else before.after(item)
  shown.set(message.seq, item)
  item.scrollIntoView({ block: 'nearest' })
  // The server accepted it, and here it is: no longer "sending…".
  outbox.querySelector(`[data-seq="${message.seq}"]`)?.remove()
}

function showStatus () {
  let state = client.state
  let text = {
    idle: 'Not subscribed',
    connecting: 'Connecting…',
    connected: 'Connected',
    reconnecting: 'Reconnecting… the server cannot be reached',
    closed: 'Closed'
  }[state]
  if (state === 'connected' && reloading !== undefined) {
    state = 'reloading'
    text = 'Connected · missed messages, reloading the room…'
  } else if (state === 'connected' && reloadedAt !== undefined) {
    state = 'gap-reloaded'
    text = `Connected · missed messages, room reloaded at ${reloadedAt.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`
  }
  status.dataset.state = state
  status.textContent = text
}

// Messages are posted one after another, so that they reach the server in the order they were sent.
// Each shows below the list as "sending…" from Enter until the server accepted it, and then until
// it comes back through the room's channel; one the server refused or never got says so.
let sending = Promise.resolve()
sendForm.addEventListener('submit', event => {
  event.preventDefault()
  if (!whoForm.reportValidity()) return
  const message = { name: nameInput.value, text: textInput.value }
  const sentRoom = room
  textInput.value = ''
  const pending = outgoing(message.text)
  sending = sending.then(async () => {
    try {
      const response = await fetch(`/rooms/${sentRoom}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(message)
      })
      if (!response.ok) throw new Error((await response.json()).message)
      const { seq } = await response.json()
      errorLine.textContent = ''
      if (shown.has(seq) || sentRoom !== room) pending.remove()
      else pending.dataset.seq = String(seq)
    } catch (error) {
      errorLine.textContent = `Not sent: ${error.message}`
      pending.dataset.state = 'failed'
      pending.querySelector('.state').textContent = 'not sent'
      if (textInput.value === '') textInput.value = message.text
    }
  })
})

function outgoing (text) {
  const item = document.createElement('li')
  item.dataset.state = 'sending'
  const body = document.createElement('span')
  body.className = 'text'
  body.textContent = text
  const state = document.createElement('span')
  state.className = 'state'
  state.textContent = 'sending…'
  item.append(body, state)
  outbox.append(item)
  return item
}

whoForm.addEventListener('submit', event => {
  event.preventDefault()
  join(roomInput.value)
})
roomInput.addEventListener('change', () => { join(roomInput.value) })
window.addEventListener('hashchange', () => { join(location.hash.slice(1)) })

const hashRoom = location.hash.slice(1)
join(roomPattern.test(hashRoom) ? hashRoom : defaultRoom)
