// The chat's messages: in a real application this is the database. Pages reload a room from it
// when the plugin reports a gap, so it must hold what the plugin's history may lose. Two stores:
// in this process's memory (`npm start`), or in Redis (`REDIS_URL=… npm start`), where every
// process of the chat finds the same rooms; a store per process would give each its own room.
import type { Redis } from 'ioredis'

export interface ChatMessage {
  /** Numbers the messages across rooms, never reused while the store lasts: pages sort and deduplicate by it. */
  seq: number
  name: string
  text: string
  /** When the server received it, as an ISO 8601 string. */
  at: string
}

export interface ChatStore {
  /** Numbers, dates and keeps a message; resolves to it as stored. */
  add (room: string, message: { name: string, text: string }): Promise<ChatMessage>
  /** The room's messages, oldest first. */
  recent (room: string): Promise<readonly ChatMessage[]>
}

export interface MessageStoreOptions {
  /** Messages kept per room, the newest. */
  perRoom: number
  /** Rooms kept; the one written to least recently is forgotten first. */
  rooms: number
}

/** Rooms in this process's memory: they last as long as the process. */
export class MessageStore implements ChatStore {
  readonly #rooms = new Map<string, ChatMessage[]>()
  readonly #perRoom: number
  readonly #maxRooms: number
  // One counter for every room, so that a room forgotten and written to again never reuses a number.
  #lastSeq = 0

  constructor ({ perRoom, rooms }: MessageStoreOptions) {
    this.#perRoom = perRoom
    this.#maxRooms = rooms
  }

  async add (room: string, { name, text }: { name: string, text: string }): Promise<ChatMessage> {
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

  async recent (room: string): Promise<readonly ChatMessage[]> {
    return this.#rooms.get(room) ?? []
  }
}

export interface RedisMessageStoreOptions {
  /** Messages kept per room, the newest. */
  perRoom: number
  /** Seconds a room is kept after its last message (and the counter after the last message anywhere). */
  ttl: number
  /** Prefix of every key the store writes, apart from the plugin's. */
  keyPrefix: string
}

// Numbers the message and appends it in one step, so that two processes never give out one number
// twice and a room never holds more than perRoom messages. The counter is refreshed with every
// message, so it outlives every room list: a number is not reused while a room that had it exists.
// The message's JSON is made here, from the seq and the rest as JSON ('"name":…}'), not decoded.
const addScript = `
local seq = redis.call('INCR', KEYS[1])
local message = '{"seq":' .. seq .. ',' .. ARGV[1]
redis.call('RPUSH', KEYS[2], message)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return message
`

/** Rooms in Redis, shared by every process of the chat; each room is a capped list that expires. */
export class RedisMessageStore implements ChatStore {
  readonly #redis: Redis
  readonly #perRoom: number
  readonly #ttl: number
  readonly #counterKey: string
  readonly #roomPrefix: string

  /** The client stays the caller's, to close. */
  constructor (redis: Redis, { perRoom, ttl, keyPrefix }: RedisMessageStoreOptions) {
    this.#redis = redis
    this.#perRoom = perRoom
    this.#ttl = ttl
    this.#counterKey = `${keyPrefix}seq`
    this.#roomPrefix = `${keyPrefix}room:`
    // EVALSHA once loaded, EVAL the first time: the script is sent once per connection.
    redis.defineCommand('chatAddMessage', { numberOfKeys: 2, lua: addScript })
  }

  async add (room: string, { name, text }: { name: string, text: string }): Promise<ChatMessage> {
    const rest = JSON.stringify({ name, text, at: new Date().toISOString() }).slice(1)
    const redis = this.#redis as Redis & { chatAddMessage (...args: Array<string | number>): Promise<string> }
    const stored = await redis.chatAddMessage(this.#counterKey, this.#roomPrefix + room, rest, this.#perRoom, this.#ttl)
    return JSON.parse(stored) as ChatMessage
  }

  async recent (room: string): Promise<readonly ChatMessage[]> {
    const stored = await this.#redis.lrange(this.#roomPrefix + room, 0, -1)
    return stored.map(json => JSON.parse(json) as ChatMessage)
  }
}
