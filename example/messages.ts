// The chat's messages, kept in memory: in a real application this is the database. Pages reload a
// room from it when the plugin reports a gap, so it must hold what the plugin's history may lose.

export interface ChatMessage {
  /** Numbers the messages of one server run, across rooms: pages sort and deduplicate by it. */
  seq: number
  name: string
  text: string
  /** When the server received it, as an ISO 8601 string. */
  at: string
}

export interface MessageStoreOptions {
  /** Messages kept per room, the newest. */
  perRoom: number
  /** Rooms kept; the one written to least recently is forgotten first. */
  rooms: number
}

export class MessageStore {
  readonly #rooms = new Map<string, ChatMessage[]>()
  readonly #perRoom: number
  readonly #maxRooms: number
  // One counter for every room, so that a room forgotten and written to again never reuses a number.
  #lastSeq = 0

  constructor ({ perRoom, rooms }: MessageStoreOptions) {
    this.#perRoom = perRoom
    this.#maxRooms = rooms
  }

  add (room: string, { name, text }: { name: string, text: string }): ChatMessage {
    const messages = this.#rooms.get(room) ?? []
    // Delete and set again: a Map iterates in insertion order, so the first room is the stalest.
    this.#rooms.delete(room)
    this.#rooms.set(room, messages)
    if (this.#rooms.size > this.#maxRooms) {
      const stalest = this.#rooms.keys().next().value as string
      this.#rooms.delete(stalest)
    }
    const message = { seq: ++this.#lastSeq, name, text, at: new Date().toISOString() }
    messages.push(message)
    if (messages.length > this.#perRoom) messages.shift()
    return message
  }

  /** The room's messages, oldest first. */
  recent (room: string): readonly ChatMessage[] {
    return this.#rooms.get(room) ?? []
  }
}
