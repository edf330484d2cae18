// Package mock holds the test doubles shared by several packages' tests, in
// the manner of wtf's mock package: Store, an in-memory account store held to
// the Firestore store's behaviour, and Scheduler, a billing.Scheduler that
// records what it is asked to schedule. Doubles that one test file alone
// needs stay in that file. The clocks are in internal/clock.
package mock
