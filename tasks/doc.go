// Package tasks runs Paymeter's Free-tier grant chain: each Free account has
// one named task that grants its weekly credits and then schedules the task
// for the following week.
//
// It holds the production billing.Scheduler, CloudTasks on Google Cloud
// Tasks (the in-process stand-in of the dev server and tests is
// internal/devtasks), the HTTP handlers that the tasks call (GrantHandler
// for POST /api/tasks/grant and ReconcileHandler, the daily sweep that
// re-enqueues overdue chains), and the middleware that guards them
// (RequireOIDC in production, RequireSecret locally).
//
// The chain is safe because every step is idempotent: a task's name is
// derived from (uid, period), so scheduling it twice makes one task; the
// grant is applied at most once per period in the account's transaction; and
// the grant handler always schedules the account's next task, so a
// redelivered, late or duplicated task converges on one live chain.
package tasks
