// Package billing is Paymeter's domain: the plans catalog, accounts and their
// ledger of credit grants, API keys, the rules that billing events apply, the
// errors the HTTP layer maps to statuses, and the small interfaces (stores,
// scheduler, payments, token verifier) that adapters implement.
//
// It imports no SDK and no net/http: every rule here is tested without a
// network, a clock or a database.
package billing
