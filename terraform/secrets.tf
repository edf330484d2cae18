# The two Stripe secrets, keyed by the environment variable each is mounted as.
# Terraform creates the secrets only: their values are added with gcloud (see
# README.md), so they never pass through variables, plans or state. Every
# function mounts the latest version; a new version reaches new instances.
locals {
  stripe_secrets = {
    STRIPE_SECRET_KEY     = "stripe-secret-key"
    STRIPE_WEBHOOK_SECRET = "stripe-webhook-secret"
  }
}

resource "google_secret_manager_secret" "stripe" {
  for_each = local.stripe_secrets

  project   = var.project_id
  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "functions_read_stripe" {
  for_each = local.stripe_secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.stripe[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}

# The operator API's bearer secret (PAYMETER_OPERATOR_SECRET), created here
# and given its value with gcloud like the Stripe secrets (README.md).
resource "google_secret_manager_secret" "operator" {
  project   = var.project_id
  secret_id = "paymeter-operator-secret"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "functions_read_operator" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.operator.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}
