// One id per browser, kept across reloads: the room this user's answers stream into.
const KEY = "cable-chat-user";

export const userId = localStorage.getItem(KEY) || `user-${crypto.randomUUID().slice(0, 8)}`;
localStorage.setItem(KEY, userId);
