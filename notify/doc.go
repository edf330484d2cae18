// Package notify delivers the notices that billing rules make and the store
// writes to each account's outbox: an email to the account's owner over SMTP
// and a signed event to the operator's webhook.
//
// One named task delivers one notice (Handler, POST /api/tasks/notify). It
// claims the outbox entry, sends each channel not yet delivered, and
// records what it sent: a channel recorded as sent is never sent again, so
// a task delivered twice, or retried after a partial failure, sends each
// email and each event once. A failed channel answers 503 and the task is
// retried with the queue's backoff; the operator's webhook is retried for
// up to three days (WebhookWindow), then the notice is marked failed.
// Emails carry the notice's id as their Message-ID and events their stable
// id, so the rare duplicate after a crash between sending and recording is
// recognisable.
//
// Nothing here runs on a metered call: the call's transaction only writes
// the outbox entry, and Dispatcher schedules its task in the background.
package notify
