// What the chat tells its user, in the user's words: never a provider's raw message (it can name
// API keys, organisations or internal ids), never a message_id.

const ERRORS = {
  rate_limit: "The model is getting too many requests right now. Try again in a moment.",
  overloaded: "The server is busy right now. Try again in a moment.",
  busy: "An answer is still being written. Wait for it to finish, or stop it.",
  auth: "The chat cannot reach its model right now. Please tell the site's owner.",
  timeout: "The model took too long to start answering.",
  stalled: "The model stopped answering partway through.",
  connection: "The connection to the model was lost.",
  invalid_request: "This message could not be sent.",
  forbidden: "This chat cannot send that message.",
  unavailable: "The chat's storage is unavailable right now. Try again shortly.",
  content_filter: "The model's provider refused this request.",
};

/** An error category (``error.category`` of an error frame) as one sentence. */
export const errorText = (category) => ERRORS[category] ?? "Something went wrong on the server.";

const ENDINGS = {
  stopped: "Stopped.",
  shutdown: "Interrupted: the server restarted.",
  no_subscribers: "Interrupted: nobody was connected to receive it.",
  interrupted: "Interrupted: the connection was lost and the rest of this answer is gone.",
  length: "Cut off: the answer reached its length limit.",
  content_filter: "Cut off by the provider's content filter.",
};

/** What to say under an answer that ended with ``status`` (and ``reason``); null when nothing. */
export function endingText(status, reason) {
  if (status === "done") return ENDINGS[reason] ?? null;
  if (status === "stopped") return ENDINGS[reason] ?? ENDINGS.stopped;
  if (status === "interrupted") return ENDINGS.interrupted;
  return null;
}
