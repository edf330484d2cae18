// Package storm holds the webhook storm test (storm_test.go): a thousand
// Stripe events from the offline stand-in, delivered to a separate server
// process with duplicates, in shuffled order and concurrently, while that
// process is killed with SIGKILL and restarted; every account must end in
// exactly the state that one in-order delivery of the same events makes.
//
// Run it alone with the emulators up:
//
//	go test -count=1 -v -run TestWebhookStorm ./internal/storm
//
// STORM_EVENTS (default 1000) and STORM_ACCOUNTS (default 40) size it.
package storm
