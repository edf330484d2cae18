locals {
  firestore_rules_file = startswith(var.firestore_rules_file, "/") ? var.firestore_rules_file : "${path.module}/${var.firestore_rules_file}"
}

resource "google_firestore_database" "main" {
  project     = var.project_id
  name        = "(default)"
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"

  delete_protection_state = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy         = "DELETE"

  depends_on = [google_project_service.enabled]
}

# The daily reconcile sweep: Free accounts whose next grant is due
# (where plan == "free" and nextGrantAt <= now, ordered by nextGrantAt).
resource "google_firestore_index" "accounts_due_grants" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "accounts"

  fields {
    field_path = "plan"
    order      = "ASCENDING"
  }

  fields {
    field_path = "nextGrantAt"
    order      = "ASCENDING"
  }
}

# Processed Stripe event ids only need to outlive Stripe's retries (3 days);
# Firestore deletes each one after its expireAt. The field is not indexed:
# nothing queries it, and an index on a timestamp written in order hotspots.
# The notice sweep: outbox entries still pending, oldest first, across accounts.
resource "google_firestore_index" "outbox_pending" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "outbox"
  query_scope = "COLLECTION_GROUP"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "created"
    order      = "ASCENDING"
  }
}

resource "google_firestore_field" "outbox_ttl" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "outbox"
  field      = "expireAt"

  ttl_config {}
  index_config {}
}

resource "google_firestore_field" "stripe_events_ttl" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "stripeEvents"
  field      = "expireAt"

  ttl_config {}
  index_config {}
}

# Revoked API keys are kept 30 days for the record, then deleted after their
# expireAt (store.RevokeKey sets it), so that creating and revoking keys in a
# loop cannot grow storage. Not indexed, for the same reasons as above.
resource "google_firestore_field" "api_keys_ttl" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "apiKeys"
  field      = "expireAt"

  ttl_config {}
  index_config {}
}

# Each lease-mode instance's journal (leaseJournals/{instance}, lease/ and
# store/lease.go) is rewritten with each flush and read only by id: none of
# its fields is indexed (a journal maps every lease it holds, and index
# entries would cost latency and the per-document index limit), and a
# journal is deleted a day after its last write (expireAt).
resource "google_firestore_field" "lease_journals_ttl" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "leaseJournals"
  field      = "expireAt"

  ttl_config {}
  index_config {}
}

resource "google_firestore_field" "lease_journals_unindexed" {
  for_each   = toset(["leases", "gone"])
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "leaseJournals"
  field      = each.key

  index_config {}
}

# An account carries the latest month's usage (per day and route) and when
# each of its keys was last used (billing.Account.Usage and KeysUsed): maps
# that grow with the days and routes and are read only with the account,
# by id. Not indexed: index entries would cost every debit latency.
resource "google_firestore_field" "accounts_unindexed" {
  for_each   = toset(["usage", "keysUsed"])
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "accounts"
  field      = each.key

  index_config {}
}

# The rules in firestore.rules (the same file the emulator loads), released to
# the database.
resource "google_firebaserules_ruleset" "firestore" {
  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = file(local.firestore_rules_file)
    }
  }

  lifecycle {
    create_before_destroy = true
  }

  depends_on = [google_firestore_database.main]
}

resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore"
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore.name}"
}
