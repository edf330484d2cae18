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

# The notices' secrets, as the Stripe ones: created here, their values added
# with gcloud (terraform/README.md), read by the functions' account. They are
# mounted only once used (functions.tf), since a secret with no version
# cannot be mounted.
locals {
  notify_secrets = {
    SMTP_URL                = "smtp-url"
    OPERATOR_WEBHOOK_SECRET = "operator-webhook-secret"
  }
  notify_secrets_mounted = {
    for env, id in local.notify_secrets : env => id
    if(env == "SMTP_URL" && var.smtp_enabled) || (env == "OPERATOR_WEBHOOK_SECRET" && var.operator_webhook_url != "")
  }
}

resource "google_secret_manager_secret" "notify" {
  for_each = local.notify_secrets

  project   = var.project_id
  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "functions_read_notify" {
  for_each = local.notify_secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.notify[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}
